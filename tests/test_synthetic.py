"""cnnjax.synthetic: the drawn X's and O's against the lecture's images and the cases' promises."""

import lecture_tables as T
import numpy as np
import pytest

from cnnjax import lecture, synthetic


def test_drawn_x_and_o_are_the_lectures_images():
    np.testing.assert_array_equal(synthetic.draw("x"), T.X_IMAGE)
    o = synthetic.draw("o")
    assert set(np.unique(o)) == {-1.0, 1.0} and (o == lecture.O_IMAGE).all()
    x, y = synthetic.xo_dataset(10, "weight", seed=0)
    assert x.shape == (10, 9, 9, 1) and sorted(y.tolist()) == [0] * 5 + [1] * 5
    for image, label in zip(x, y, strict=True):  # thicker strokes: more ink than the lecture's drawing
        assert (image > 0).sum() > (synthetic.draw(synthetic.XO_CLASSES[label]) > 0).sum()


@pytest.mark.parametrize("case", synthetic.CASES)
def test_each_case_is_half_x_half_o_of_plus_and_minus_one(case):
    x, y = synthetic.xo_dataset(40, case, seed=1)
    assert x.shape == (40, 9, 9, 1) and x.dtype == np.float32 and sorted(y.tolist()) == [0] * 20 + [1] * 20
    assert set(np.unique(x)) <= {-1.0, 1.0}
    changed = [(image[:, :, 0] != synthetic.draw(synthetic.XO_CLASSES[k])).any() for image, k in zip(x, y, strict=True)]
    changed_x = sum(c for c, k in zip(changed, y, strict=True) if k == 0)
    if case == "clean":
        assert not any(changed)
    else:  # at 9x9 a small scaling can draw the same pixels; an O turned is the same O
        assert changed_x >= 8


def test_unknown_case_is_refused():
    with pytest.raises(ValueError, match="`case` must be one of"):
        synthetic.xo_dataset(4, "blurry")
