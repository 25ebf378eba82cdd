"""The Django admin's changelists, driven as a coordinator's browser drives them."""

import re


def post_action(client, url: str, action: str, objects: list, **form):
    """POST the changelist's action form as the admin's own page does."""
    data = {"action": action, "_selected_action": [str(obj.pk) for obj in objects]}
    return client.post(url, {**data, **form}, follow=True)


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def changelist_rows(response, key: str) -> dict[str, dict[str, str]]:
    """The changelist's rows: the text of the `key` column → {column: text}."""
    table = {}
    for row in re.findall(r"<tr>(.*?)</tr>", response.content.decode(), re.S):
        cells = {
            column: re.sub(r"<[^>]+>", "", text).strip()
            for column, text in re.findall(r'class="field-(\w+)[^"]*">(.*?)</t[dh]>', row, re.S)
        }
        if key in cells:
            table[cells[key]] = cells
    return table
