import pytest
import torch

from swinrmt.layers import windows as W


@pytest.mark.parametrize("length,window,shift,expect", [
    (10, 4, True, (4, 2, 12)), (3, 7, True, (3, 0, 3)), (7, 7, True, (7, 0, 7)), (8, 7, False, (7, 0, 14)),
])
def test_adaptive_geometry(length, window, shift, expect):
    g = W.axis_geometry(length, window, shift)
    assert (g.window, g.shift, g.padded) == expect


def test_window_size_must_be_positive():
    with pytest.raises(ValueError, match="window size"):
        W.axis_geometry(5, 0, False)


@pytest.mark.parametrize("length,window,shift", [(9, 4, True), (8, 4, True), (5, 3, False), (11, 7, True)])
def test_axis_mask_matches_region_definition(length, window, shift):
    """Independent construction: after a roll by -s, rolled position p holds original (p+s) mod L, and it is a
    wrapped token iff p + s >= L. Keys may be used iff same window, same wrapped status, and not padding."""
    g = W.axis_geometry(length, window, shift)
    allowed = W.axis_allowed(g)
    for n in range(g.num_windows):
        for i in range(g.window):
            for j in range(g.window):
                p, r = n * g.window + i, n * g.window + j
                want = r < length and p < length and ((p + g.shift >= length) == (r + g.shift >= length))
                if p >= length:  # padding query: its keys only need to be non-padding of its own label
                    want = False
                assert bool(allowed[n, i, j]) == want, (n, i, j)


def test_roll_pad_partition_roundtrip():
    x = torch.randn(2, 9, 10, 5)
    gh, gw = W.axis_geometry(9, 4, True), W.axis_geometry(10, 4, True)
    y = W.roll_and_pad(x, gh, gw)
    assert y.shape == (2, 12, 12, 5)
    win = W.window_partition(y, gh, gw)
    assert win.shape == (2, 9, 16, 5)
    assert torch.equal(W.crop_and_unroll(W.window_reverse(win, gh, gw), gh, gw), x)


def test_2d_mask_is_product_of_axis_masks():
    gh, gw = W.axis_geometry(9, 4, True), W.axis_geometry(6, 4, True)
    m2 = W.window_allowed_2d(gh, gw).view(gh.num_windows, gw.num_windows, gh.window, gw.window, gh.window, gw.window)
    ah, aw = W.axis_allowed(gh), W.axis_allowed(gw)
    for a in range(gh.num_windows):
        for b in range(gw.num_windows):
            prod = ah[a][:, None, :, None] & aw[b][None, :, None, :]
            assert torch.equal(m2[a, b], prod)
