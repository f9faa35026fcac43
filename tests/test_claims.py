"""Findings carry the verdict their evidence computes, and the papers' figures are findable."""
import numpy as np
import pytest

import dirackit as dk
from dirackit.claims import compared, exact, report
from dirackit.stats import compare_paired


def results(n, a_only, b_only):
    a, b = np.zeros(n, bool), np.zeros(n, bool)
    a[:a_only] = True
    b[a_only:a_only + b_only] = True
    return a, b


def test_a_finding_takes_its_verdict_from_the_comparison(capsys):
    shown = compared("DiracNet beats plain", compare_paired(*results(1000, 90, 20), "dirac", "plain"), paper="91.5 vs 89.5")
    noise = compared("DBB beats plain", compare_paired(*results(1000, 12, 10), "dbb", "vgg"), paper="94.62 vs 93.95")
    worse = compared("wide beats deep", compare_paired(*results(1000, 10, 80), "wide", "deep"))
    assert [f.verdict for f in (shown, noise, worse)] == ["shown", "within noise at this size", "contradicted here"]
    assert noise.note and "too small or too short" in noise.note and not shown.note
    rows = report([shown, noise, worse])
    out = capsys.readouterr().out
    assert "DiracNet beats plain: SHOWN" in out and "DBB beats plain: WITHIN NOISE AT THIS SIZE" in out
    assert "the paper: 94.62 vs 93.95" in out and "95% CI" in out
    assert rows[1] == noise.as_dict() and rows[1]["verdict"] == "within noise at this size"
    assert rows[0]["low"] > 0 and rows[1]["low"] < 0 < rows[1]["high"] and rows[2]["high"] < 0


def test_an_exact_check_holds_only_within_its_tolerance():
    assert exact("folding keeps the function", 3e-7, 1e-5, "max relative error").verdict == "shown"
    assert exact("folding keeps the function", 2e-3, 1e-5, "max relative error").verdict == "contradicted here"


def test_papers_link_arxiv_and_find_their_figures():
    for paper in dk.papers.PAPERS.values():
        assert paper.url.startswith("https://arxiv.org/abs/") and paper.claim and paper.figures
        assert all(f.unit in ("% error", "% accuracy") for f in paper.figures)
    assert dk.papers.WRN.figure("wrn-28-10").value == 4.00
    assert dk.papers.WRN.figure("WRN-28-10", "CIFAR-100").value == 19.25
    assert dk.papers.DIRACNET.figure("wrn-28-10") is None
    assert "arxiv.org/abs/2103.13425" in str(dk.papers.DBB)


def test_a_papers_pair_of_figures_or_where_it_has_one():
    on_cifar = dk.papers.DBB.versus("VGG-16 + DBB", "vgg-16", "cifar100")
    assert on_cifar.startswith("VGG-16 + DBB: 75.72% accuracy on CIFAR-100") and "VGG-16: 74.05%" in on_cifar
    elsewhere = dk.papers.DGCONV.versus("G-ResNeXt-50", "ResNeXt-50 (32x4d)", "CIFAR-10")
    assert elsewhere.startswith("no CIFAR-10 figure") and "78.592% accuracy on ImageNet" in elsewhere
    assert "78.198%" in elsewhere
    assert "reports no figures" in dk.papers.DBB.versus("VGG-16 + DBB", "VGG-19")
