"""The dispatch policy: its defaults, the validation that keeps quality ahead of cost and the
relaxation and SLA steps in order, and its admin page."""

import pytest
from django.core.exceptions import ValidationError
from django.forms.models import model_to_dict

from dispatch.models import DispatchPolicy

pytestmark = pytest.mark.django_db


def test_the_default_policy_is_valid_and_puts_quality_above_cost():
    # when
    policy = DispatchPolicy.load()
    policy.full_clean()

    # then
    assert (policy.weight_quality, policy.weight_cost) == (0.40, 0.05)


@pytest.mark.parametrize(
    ("changes", "errors"),
    [
        (
            {"weight_quality": 0.05, "weight_cost": 0.05},
            {"weight_cost": ["Quality leads routing: its weight must exceed cost's."]},
        ),
        (
            {
                "weight_quality": 0.0,
                "weight_proficiency": 0.0,
                "weight_idle": 0.0,
                "weight_load": 0.0,
                "weight_cost": 0.0,
            },
            {"weight_quality": ["At least one weight must be above zero."]},
        ),
        (
            {"relax_proficiency_after_seconds": 300, "relax_language_after_seconds": 120},
            {
                "relax_language_after_seconds": [
                    "Secondary languages are the second relaxation step: relax proficiency first."
                ]
            },
        ),
        (
            {"sla_urgent_seconds": 200, "sla_normal_seconds": 100},
            {
                "sla_urgent_seconds": ["The urgent target cannot be longer than the high one."],
                "sla_high_seconds": ["The high target cannot be longer than the normal one."],
            },
        ),
        (
            {"weight_quality": 1.5},
            {"weight_quality": ["Ensure this value is less than or equal to 1."]},
        ),
    ],
)
def test_a_policy_that_breaks_a_promise_is_refused(changes, errors):
    # given
    policy = DispatchPolicy.load()
    for name, value in changes.items():
        setattr(policy, name, value)

    # when
    with pytest.raises(ValidationError) as refused:
        policy.full_clean()

    # then
    assert refused.value.message_dict == errors


def policy_form(**changes) -> dict:
    data = model_to_dict(DispatchPolicy.load(), exclude=["id"])
    return {**data, **changes}


def test_a_coordinator_changes_the_weights_in_the_admin(admin_client):
    # when
    response = admin_client.post(
        "/admin/dispatch/dispatchpolicy/1/change/",
        policy_form(weight_quality=0.5, weight_idle=0.3, weight_cost=0.0),
    )

    # then
    assert response.status_code == 302
    policy = DispatchPolicy.load()
    assert (policy.weight_quality, policy.weight_idle, policy.weight_cost) == (0.5, 0.3, 0.0)


def test_the_admin_refuses_cost_above_quality_and_keeps_the_old_weights(admin_client):
    # when
    response = admin_client.post(
        "/admin/dispatch/dispatchpolicy/1/change/",
        policy_form(weight_quality=0.1, weight_cost=0.2),
    )

    # then
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "weight_cost": ["Quality leads routing: its weight must exceed cost's."]
    }
    policy = DispatchPolicy.load()
    assert (policy.weight_quality, policy.weight_cost) == (0.40, 0.05)
