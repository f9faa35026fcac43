import pytest

from dirackit import recipes
from dirackit.recipes import Recipe, lr_at


def test_presets_follow_their_papers():
    assert recipes.WRN.nesterov and recipes.WRN.decay == "all" and recipes.WRN.pad_mode == "reflect"
    assert recipes.WRN.milestones == (60, 120, 160) and recipes.WRN.gamma == 0.2 and recipes.WRN.epochs == 200
    assert not recipes.DIRACNET.nesterov and recipes.DIRACNET.decay == "weights"
    assert recipes.PRERESNET.weight_decay == 1e-4 and recipes.PRERESNET.milestones == (82, 123)
    assert recipes.get_recipe("resnext") is recipes.RESNEXT


def test_replace_makes_a_copy_and_rejects_unknown_fields():
    short = recipes.WRN.replace(epochs=3)
    assert short.epochs == 3 and recipes.WRN.epochs == 200
    with pytest.raises(TypeError):
        recipes.WRN.replace(epoch=3)
    with pytest.raises(ValueError, match="unknown recipe"):
        recipes.get_recipe("adam")


@pytest.mark.parametrize("field, value", [("epochs", 0), ("lr", -1.0), ("schedule", "poly"),
                                          ("pad_mode", "edge"), ("decay", "bn"), ("label_smoothing", 1.0)])
def test_invalid_values_say_which_field(field, value):
    with pytest.raises(ValueError, match=field):
        Recipe(**{field: value})


def test_step_schedule():
    r = Recipe(epochs=10, milestones=(3, 6), gamma=0.5, lr=1.0)
    assert [lr_at(r, e * 4, 4) for e in range(10)] == [1, 1, 1, .5, .5, .5, .25, .25, .25, .25]


def test_cosine_and_onecycle_shapes():
    r = Recipe(epochs=4, schedule="cosine", lr=1.0)
    assert lr_at(r, 0, 10) == 1.0 and lr_at(r, 20, 10) == pytest.approx(0.5) and lr_at(r, 39, 10) < 0.01
    r = Recipe(epochs=10, schedule="onecycle", warmup=0.2, lr=1.0)
    lrs = [lr_at(r, s, 10) for s in range(100)]
    assert max(lrs) == 1.0 and lrs.index(1.0) == 19 and lrs[0] < 0.1 and lrs[-1] < 0.02
    assert all(a <= b for a, b in zip(lrs[:20], lrs[1:20])) and all(a >= b for a, b in zip(lrs[19:], lrs[20:]))


@pytest.mark.parametrize("preset, epochs, expected", [
    (recipes.WRN, 10, (3, 6, 8)),        # 60/120/160 of 200
    (recipes.WRN, 4, (1, 2, 3)),
    (recipes.RESNEXT, 30, (15, 23)),     # 150/225 of 300 (22.5 rounds half up)
    (recipes.PRERESNET, 20, (10, 15)),   # 82/123 of 164
    (recipes.WRN, 400, (120, 240, 320)),
])
def test_a_shortened_step_schedule_keeps_its_shape(preset, epochs, expected):
    short = preset.replace(epochs=epochs)
    assert short.milestones == expected
    lrs = [lr_at(short, e, 1) for e in range(epochs)]
    assert lrs[0] == preset.lr and lrs[-1] == pytest.approx(preset.lr * preset.gamma ** len(preset.milestones))


def test_a_short_run_anneals_and_explicit_milestones_win():
    assert recipes.WRN.replace(epochs=1).milestones == ()  # nothing to drop inside one epoch
    assert recipes.WRN.replace(epochs=2).milestones == (1, 1)  # both drops land on epoch 1: final lr kept
    assert recipes.WRN.replace(epochs=10, milestones=(5,)).milestones == (5,)
    assert Recipe(epochs=10).milestones == (3, 6, 8)  # the default is a shape, not fixed epochs
    assert recipes.WRN.replace(lr=0.05).milestones == (60, 120, 160)  # only a new length rescales


def test_milestones_outside_the_run_are_refused():
    with pytest.raises(ValueError, match=r"milestones \[60, 120, 160\] lie outside a 10-epoch run"):
        Recipe(epochs=10, milestones=(60, 120, 160))
    assert Recipe(epochs=10, milestones=(60,), schedule="cosine").milestones == (60,)  # unused by cosine
