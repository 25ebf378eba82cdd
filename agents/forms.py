"""The portal's forms, and the availability formset coordinators edit in the admin."""

from django import forms
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet

from .models import Agent, AgentAvailability, time_zone_names

# The tz database's regions, in the order people look for them; the legacy aliases
# ("US/Eastern", "Cuba") name the same zones again and would only lengthen the list.
TIME_ZONE_REGIONS = (
    "Africa",
    "America",
    "Antarctica",
    "Arctic",
    "Asia",
    "Atlantic",
    "Australia",
    "Europe",
    "Indian",
    "Pacific",
)


def time_zone_choices(current: str) -> list:
    choices: list = [("UTC", "UTC")]
    listed = {"UTC"}
    for region in TIME_ZONE_REGIONS:
        names = sorted(name for name in time_zone_names() if name.startswith(f"{region}/"))
        listed.update(names)
        choices.append((region, [(name, name.replace("_", " ")) for name in names]))
    if current not in listed:
        # A coordinator may have set an alias; the agent must still see what is set.
        choices.insert(1, (current, current))
    return choices


class ProfileForm(forms.ModelForm):
    class Meta:
        model = Agent
        fields = ["display_name", "time_zone"]
        labels = {"display_name": "Display name", "time_zone": "Time zone"}
        help_texts = {
            "display_name": "Customers and bots see this name.",
            "time_zone": "Your days, weeks and availability are in this time zone.",
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["time_zone"].widget = forms.Select(
            choices=time_zone_choices(self.instance.time_zone)
        )


def overlapping_pair(
    windows: list[AgentAvailability],
) -> tuple[AgentAvailability, AgentAvailability] | None:
    ordered = sorted(windows, key=lambda window: (window.weekday, window.start_time))
    for earlier, later in zip(ordered, ordered[1:], strict=False):
        if earlier.overlaps(later):
            return earlier, later
    return None


def overlap_error(pair: tuple[AgentAvailability, AgentAvailability]) -> ValidationError:
    return ValidationError(
        "%(first)s overlaps %(second)s.",
        code="overlap",
        params={"first": pair[0], "second": pair[1]},
    )


class AvailabilityForm(forms.Form):
    """One time window on one or more weekdays, e.g. 09:00-17:00 Monday to Friday."""

    weekdays = forms.TypedMultipleChoiceField(
        label="Days",
        choices=AgentAvailability.Weekday.choices,
        coerce=int,
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one day."},
    )
    start_time = forms.TimeField(
        label="From", widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M")
    )
    end_time = forms.TimeField(
        label="To", widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M")
    )

    def __init__(self, *args, agent: Agent, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.agent = agent
        self.windows: list[AgentAvailability] = []

    def clean(self) -> dict:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        self.windows = [
            AgentAvailability(
                agent=self.agent,
                weekday=weekday,
                start_time=cleaned["start_time"],
                end_time=cleaned["end_time"],
            )
            for weekday in cleaned["weekdays"]
        ]
        # The model's own rule (it starts before it ends) is the same for every day's copy.
        self.windows[0].clean()
        existing = list(AgentAvailability.objects.filter(agent=self.agent))
        for window in self.windows:
            clash = next((old for old in existing if window.overlaps(old)), None)
            if clash is not None:
                raise overlap_error((window, clash))
        return cleaned

    def save(self) -> list[AgentAvailability]:
        return AgentAvailability.objects.bulk_create(self.windows)


class AvailabilityInlineFormSet(BaseInlineFormSet):
    """The admin's availability rows for one agent: no two may overlap."""

    def clean(self) -> None:
        super().clean()
        kept = [
            form.instance
            for form in self.forms
            if form.is_valid() and form.cleaned_data and not self._should_delete_form(form)
        ]
        pair = overlapping_pair(kept)
        if pair is not None:
            raise overlap_error(pair)
