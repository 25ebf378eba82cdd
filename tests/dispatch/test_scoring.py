"""The score, part by part, on plain values: no database, exact numbers worked out by hand."""

import pytest

from dispatch.scoring import (
    CandidateInputs,
    Pool,
    Score,
    Weights,
    normalised_parts,
    score,
    shrunk_quality,
)

DEFAULT_WEIGHTS = Weights(quality=0.40, proficiency=0.25, idle=0.20, load=0.10, cost=0.05)
POOL = Pool(csat_mean=4.0, prior_ratings=5, highest_pay_rate=40.0)


def candidate(**overrides) -> CandidateInputs:
    values = {
        "ratings_count": 0,
        "ratings_sum": 0,
        "proficiency": None,
        "idle_seconds": 600.0,
        "load": 0,
        "capacity": 2,
        "pay_rate": 0.0,
    }
    return CandidateInputs(**{**values, **overrides})


# -- quality: Bayesian shrinkage toward the pool mean ------------------------------------------


@pytest.mark.parametrize(
    ("ratings_sum", "ratings_count", "prior_mean", "prior_ratings", "expected"),
    [
        # no ratings of one's own: the pool mean
        (0, 0, 4.0, 5, 4.0),
        # one lucky 5 against five pseudo-ratings of 4: (5*4 + 5) / 6
        (5, 1, 4.0, 5, 25 / 6),
        # twenty ratings averaging 4.5: (5*4 + 90) / 25
        (90, 20, 4.0, 5, 4.4),
        # no prior at all: the agent's own mean
        (9, 2, 4.0, 0, 4.5),
        # no ratings and no prior: the pool mean, not a division by zero
        (0, 0, 3.5, 0, 3.5),
    ],
)
def test_quality_is_the_mean_csat_shrunk_toward_the_pool_mean(
    ratings_sum, ratings_count, prior_mean, prior_ratings, expected
):
    # when
    quality = shrunk_quality(
        ratings_sum=ratings_sum,
        ratings_count=ratings_count,
        prior_mean=prior_mean,
        prior_ratings=prior_ratings,
    )

    # then
    assert quality == pytest.approx(expected, abs=1e-12)


def test_one_lucky_rating_does_not_beat_a_long_record_of_good_ones():
    # given: one 5-star rating against twenty averaging 4.5, in a pool averaging 4
    lucky = candidate(ratings_count=1, ratings_sum=5)
    steady = candidate(ratings_count=20, ratings_sum=90)

    # when
    lucky_parts = normalised_parts(lucky, pool=POOL, longest_idle_seconds=600)
    steady_parts = normalised_parts(steady, pool=POOL, longest_idle_seconds=600)

    # then: (25/6 - 1) / 4 against (4.4 - 1) / 4
    assert round(lucky_parts["quality"], 6) == 0.791667
    assert round(steady_parts["quality"], 6) == 0.85


def test_with_no_rating_in_the_pool_everyone_starts_in_the_middle_of_the_scale():
    # given
    pool = Pool(csat_mean=None, prior_ratings=5, highest_pay_rate=0.0)

    # when
    parts = normalised_parts(candidate(), pool=pool, longest_idle_seconds=600)

    # then: quality 3 of 1..5
    assert parts["quality"] == 0.5


# -- the other parts -----------------------------------------------------------------------


def test_each_part_is_normalised_to_0_1_with_1_the_best():
    # given: proficiency 4 of 5, idle half the longest, one of four slots taken, paid a
    # quarter of the pool's highest rate, four ratings averaging 5 in a pool averaging 4
    inputs = candidate(
        ratings_count=4,
        ratings_sum=20,
        proficiency=4.0,
        idle_seconds=300.0,
        load=1,
        capacity=4,
        pay_rate=10.0,
    )
    pool = Pool(csat_mean=4.0, prior_ratings=4, highest_pay_rate=40.0)

    # when
    parts = normalised_parts(inputs, pool=pool, longest_idle_seconds=600)

    # then: quality (4*4 + 20) / 8 = 4.5
    assert parts == {
        "quality": 0.875,
        "proficiency": 0.75,
        "idle": 0.5,
        "load": 0.75,
        "cost": 0.75,
    }


def test_an_agent_who_never_had_work_counts_as_the_longest_idle():
    # given
    never = candidate(idle_seconds=None)

    # when
    parts = normalised_parts(never, pool=POOL, longest_idle_seconds=600)

    # then
    assert parts["idle"] == 1.0


def test_a_ticket_that_needs_no_skill_gives_every_agent_the_whole_proficiency_part():
    # when
    parts = normalised_parts(candidate(proficiency=None), pool=POOL, longest_idle_seconds=600)

    # then
    assert parts["proficiency"] == 1.0


def test_nobody_paid_means_no_one_costs_more():
    # given
    pool = Pool(csat_mean=4.0, prior_ratings=5, highest_pay_rate=0.0)

    # when
    parts = normalised_parts(candidate(pay_rate=0.0), pool=pool, longest_idle_seconds=600)

    # then
    assert parts["cost"] == 1.0


# -- the weighted sum ------------------------------------------------------------------------


def test_the_score_is_the_weighted_sum_of_the_parts():
    # given: the parts of the test above
    inputs = candidate(
        ratings_count=4,
        ratings_sum=20,
        proficiency=4.0,
        idle_seconds=300.0,
        load=1,
        capacity=4,
        pay_rate=10.0,
    )
    pool = Pool(csat_mean=4.0, prior_ratings=4, highest_pay_rate=40.0)

    # when
    result = score(inputs, weights=DEFAULT_WEIGHTS, pool=pool, longest_idle_seconds=600)

    # then: 0.4*0.875 + 0.25*0.75 + 0.2*0.5 + 0.1*0.75 + 0.05*0.75
    assert result == Score(
        total=0.75,
        parts={
            "quality": 0.35,
            "proficiency": 0.1875,
            "idle": 0.1,
            "load": 0.075,
            "cost": 0.0375,
        },
    )


def test_quality_outweighs_cost_under_the_default_weights():
    # given: an excellent expensive agent and a mediocre free one, otherwise alike
    excellent = candidate(ratings_count=20, ratings_sum=100, pay_rate=40.0)
    mediocre = candidate(ratings_count=20, ratings_sum=60, pay_rate=0.0)

    # when
    excellent_score, mediocre_score = (
        score(c, weights=DEFAULT_WEIGHTS, pool=POOL, longest_idle_seconds=600)
        for c in (excellent, mediocre)
    )

    # then the excellent one comes first: for quality (20 + 100) / 25 = 4.8 against
    # (20 + 60) / 25 = 3.2
    assert (excellent_score.parts["quality"], excellent_score.parts["cost"]) == (0.38, 0.0)
    assert (mediocre_score.parts["quality"], mediocre_score.parts["cost"]) == (0.22, 0.05)
    assert excellent_score.total > mediocre_score.total


def test_idle_time_is_measured_against_the_longest_idle_candidate():
    # given: idle 15 minutes (the longest), 5 minutes, and never busy
    candidates = [
        candidate(idle_seconds=900.0),
        candidate(idle_seconds=300.0),
        candidate(idle_seconds=None),
    ]

    # when
    scores = [
        score(c, weights=DEFAULT_WEIGHTS, pool=POOL, longest_idle_seconds=900.0) for c in candidates
    ]

    # then: 900/900, 300/900, and the whole part for never
    assert [s.parts["idle"] for s in scores] == [0.2, 0.066667, 0.2]


def test_when_nobody_has_waited_at_all_idle_time_decides_nothing():
    # when
    first, second = (
        score(
            candidate(idle_seconds=0.0),
            weights=DEFAULT_WEIGHTS,
            pool=POOL,
            longest_idle_seconds=0.0,
        )
        for _ in range(2)
    )

    # then both get the whole idle part: it ranks neither above the other
    assert first == second
    assert first.parts["idle"] == 0.2
