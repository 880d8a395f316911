"""A seeded generator of CloudEvents shaped like Altinn Events traffic.

Altinn Events carries events about app instances and dialogs: each has a
`resource` (`urn:altinn:resource:app_<org>_<app>`), a `subject` naming a
party (`/party/N`), an `alternativesubject` naming a person, and a source URL
of the instance. Subjects follow a Zipf distribution over 100,000 parties, so
a few parties are busy and most are rare; resources and types are skewed the
same way. `data` is an instance document of 200 to 2,000 bytes of JSON.

The same seed gives the same events, in the same order, on every machine.
Events are drawn in blocks of `BLOCK` from one random generator per block, so
any range can be generated without the events before it:

>>> workload = Workload(seed=1)
>>> event = workload.event(0)
>>> event["subject"].startswith("/party/"), event["specversion"]
(True, '1.0')
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

PARTIES = 100_000
FIRST_PARTY = 50_000_000
# Zipf exponent of the subject, resource and type distributions.
ZIPF_EXPONENT = 1.0
MIN_DATA_BYTES = 200
MAX_DATA_BYTES = 2_000
BLOCK = 1024

EVENT_TYPES = (
    "app.instance.created",
    "app.instance.process.movedTo.Task_1",
    "app.instance.process.completed",
    "app.instance.saved",
    "app.instance.deleted",
    "app.instance.restored",
    "dialogporten.dialog.created.v1",
    "dialogporten.dialog.updated.v1",
    "dialogporten.dialog.seen.v1",
    "dialogporten.dialog.deleted.v1",
    "no.altinn.events.digitalt-dodsbo.opprettet",
    "automatedtest.triggered",
)

_ORGS = ("ttd", "nav", "skd", "brg", "dibk", "udir", "ssb", "dat", "mav", "krt")
_APPS = (
    "apps-test", "skjema", "melding", "soknad", "innsyn", "rapport", "klage", "endring",
    "flyttemelding", "stotte", "tilskudd", "registrering", "varsel", "avtale", "frist",
    "vedlegg", "godkjenning", "tilsyn", "bygg", "regnskap",
)  # fmt: skip
_CONTENT_TYPES = ("application/xml", "application/pdf", "application/json", "image/png")
_TASKS = ("Task_1", "Task_2", "Task_Confirm", "EndEvent_1")
_DATA_TYPES = ("model", "ref-data-as-pdf", "attachment")
# The start of the generated event times; one event every 10 ms after it.
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def zipf_cumulative(count: int, exponent: float = ZIPF_EXPONENT) -> list[float]:
    """Return the cumulative weights of ranks 1..count under a Zipf law, for `random.choices`."""
    return list(itertools.accumulate(1.0 / rank**exponent for rank in range(1, count + 1)))


def party_of_rank(rank: int) -> int:
    """Return the party number of a subject rank (1 is the busiest party)."""
    return FIRST_PARTY + rank


def rank_with_frequency(frequency: float, count: int = PARTIES) -> int:
    """Return the subject rank whose share of the events is closest to `frequency`.

    >>> rank_with_frequency(1e-5)  # about 1 event in 100,000
    8271
    """
    cumulative = zipf_cumulative(count)
    total = cumulative[-1]
    # The share of rank k is 1 / (k^s * total); solve for k.
    return max(1, min(count, round((1.0 / (frequency * total)) ** (1.0 / ZIPF_EXPONENT))))


class Workload:
    """Deterministic Altinn-shaped events: `event(n)` is the same for the same seed and n."""

    def __init__(self, seed: int = 1, id_prefix: str = "") -> None:
        self.seed = seed
        self.id_prefix = id_prefix
        self._party_weights = zipf_cumulative(PARTIES)
        self._resources = [f"{org}_{app}" for org in _ORGS for app in _APPS]
        self._resource_weights = zipf_cumulative(len(self._resources))
        self._type_weights = zipf_cumulative(len(EVENT_TYPES))
        self._party_total = self._party_weights[-1]
        self._resource_total = self._resource_weights[-1]
        self._type_total = self._type_weights[-1]

    def event(self, number: int) -> dict[str, Any]:
        """Return event number `number` (0-based) of this workload as a JSON object."""
        return next(self.events(number, 1))

    def events(self, start: int = 0, count: int | None = None) -> Iterator[dict[str, Any]]:
        """Yield events `start`, `start + 1`, … (`count` of them, or without end)."""
        stop = None if count is None else start + count
        block = start // BLOCK
        while stop is None or block * BLOCK < stop:
            rng = random.Random(self.seed * 1_000_003 + block)
            first = block * BLOCK
            for number in range(first, first + BLOCK):
                event = self._draw(rng, number)
                if number >= start and (stop is None or number < stop):
                    yield event
            block += 1

    def _draw(self, rng: random.Random, number: int) -> dict[str, Any]:
        rank = 1 + bisect.bisect_left(self._party_weights, rng.random() * self._party_total)
        party = party_of_rank(min(rank, PARTIES))
        resource = self._resources[
            bisect.bisect_left(self._resource_weights, rng.random() * self._resource_total)
        ]
        event_type = EVENT_TYPES[
            bisect.bisect_left(self._type_weights, rng.random() * self._type_total)
        ]
        instance = _uuid4(rng)
        org, app = resource.split("_", 1)
        time = _EPOCH + timedelta(milliseconds=10 * number)
        return {
            "specversion": "1.0",
            "id": f"{self.id_prefix}{_uuid4(rng)}",
            "source": f"https://{org}.apps.altinn.no/{org}/{app}/instances/{party}/{instance}",
            "type": event_type,
            "subject": f"/party/{party}",
            "alternativesubject": f"/person/{10_000_000_000 + party * 7 % 89_999_999_999}",
            "resource": f"urn:altinn:resource:app_{resource}",
            "time": time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "datacontenttype": "application/json",
            "data": _instance_data(rng, org, app, party, instance, time),
        }


def _pick(rng: random.Random, choices: tuple[str, ...]) -> str:
    # random.choice costs three times as much; this is the same distribution.
    return choices[int(rng.random() * len(choices))]


def _uuid4(rng: random.Random) -> str:
    text = f"{rng.getrandbits(128):032x}"
    return f"{text[:8]}-{text[8:12]}-4{text[13:16]}-a{text[17:20]}-{text[20:]}"


def _instance_data(
    rng: random.Random, org: str, app: str, party: int, instance: str, time: datetime
) -> dict[str, Any]:
    """Build an app instance document of MIN_DATA_BYTES to MAX_DATA_BYTES of JSON."""
    target = MIN_DATA_BYTES + int(rng.random() * (MAX_DATA_BYTES - MIN_DATA_BYTES + 1))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ")
    data: dict[str, Any] = {"instanceId": f"{party}/{instance}", "appId": f"{org}/{app}"}
    # Sizes in bytes of JSON: the two members above take 90, the process 75,
    # each data element 160 to 175, and the padding member 10 plus its text.
    size = 90
    if target >= size + 75 + 10:
        data["process"] = {"currentTask": _pick(rng, _TASKS), "started": stamp}
        size += 75
    elements: list[dict[str, Any]] = []
    while size + 175 + 10 <= target:
        elements.append(
            {
                "id": _uuid4(rng),
                "dataType": _pick(rng, _DATA_TYPES),
                "contentType": _pick(rng, _CONTENT_TYPES),
                "size": 1_000 + int(rng.random() * 5_000_000),
                "created": stamp,
            }
        )
        size += 175
    if elements:
        data["dataElements"] = elements
    # Pad to the drawn size with a free-text member, as forms carry.
    data["note"] = "x" * max(0, target - size - 10)
    return data
