import pytest

from dama_asr.adapters.schedule import Zone, boundaries, dama_schedule, mean_rank


def test_whisper_base_schedule_by_hand():
    # L=6: l_early=floor(1.8)=1, l_late=floor(4.2)=4; late ramp 8 + (l-4)/2*24 -> 8, 20, 32
    s = dama_schedule(6)
    assert [x.rank for x in s] == [32, 8, 8, 8, 20, 32]
    assert [x.zone for x in s] == [Zone.EARLY, Zone.MIDDLE, Zone.MIDDLE, Zone.LATE, Zone.LATE, Zone.LATE]


def test_large_v2_schedule_matches_formula():
    s = dama_schedule(32)
    assert boundaries(32, 0.3, 0.7) == (9, 22)
    # early: 32 - (l-1)/8*24 = 32, 29, 26, ..., 8
    assert [x.rank for x in s[:9]] == [32, 29, 26, 23, 20, 17, 14, 11, 8]
    assert all(x.zone is Zone.MIDDLE and x.rank == 8 for x in s[9:21])
    # late: 8 + (l-22)/10*24 rounded half up: l=23 -> 10.4 -> 10, l=25 -> 15.2 -> 15, l=27 -> 20
    assert [x.rank for x in s[21:]] == [8, 10, 13, 15, 18, 20, 22, 25, 27, 30, 32]


def test_u_shape_and_custom_thresholds():
    s = dama_schedule(12, r_high=64, r_low=4, theta1=0.25, theta2=0.75)
    ranks = [x.rank for x in s]
    assert ranks[0] == 64 and ranks[-1] == 64 and min(ranks) == 4
    middle = [x.layer for x in s if x.zone is Zone.MIDDLE]
    assert middle == [4, 5, 6, 7, 8]


def test_mean_rank_preserves_the_budget():
    assert mean_rank(dama_schedule(6)) == 18  # (32+8+8+8+20+32)/6 = 18


def test_layer_out_of_range():
    from dama_asr.adapters.schedule import dama_rank

    with pytest.raises(ValueError, match="1..6"):
        dama_rank(0, 6, 32, 8, 0.3, 0.7)
