"""The demo's dispatch calls: each one its own incident, ahead of the patrol on its route.

A crew trying the demo wants what a shift gives: every call a different incident (its
nature, details and address), at a place the vehicle is heading for, so that the arrow
points ahead, the distance falls as the car drives, and "on scene" is pressed where the
incident is.

How it works: the route's named points (``hil/routes/kenitra.gpx``: a crossroads, the
corniche, the underpass...) are the addresses. :class:`CallPlanner` finds when the
vehicle passes each one in a lap (by sampling the route's timeline), and for a new call
takes the first named point at least :data:`LEAD_S` seconds of driving ahead of the
vehicle that no open call already uses, so the crew has time to read and accept before
arriving. Natures come from :data:`INCIDENTS` in turn. Pure: the route time is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

from hil.route import Route, distance_m

LEAD_S = 45.0  # seconds of driving between the call and the scene, at least
SAMPLE_S = 0.5  # the route timeline is sampled this finely to find its named points

# (nature, details): what dispatch would send, different for every call.
INCIDENTS: tuple[tuple[str, str], ...] = (
    ("Rixe sur la voie publique", "Deux individus, l'un armé d'un couteau."),
    ("Vol avec violence", "Sac arraché à une passante ; l'auteur s'enfuit à pied, blouson rouge."),
    ("Accident de la circulation", "Deux voitures, un blessé léger, la chaussée bloquée."),
    ("Cambriolage en cours", "Un voisin entend des bruits dans un commerce fermé."),
    ("Personne égarée", "Homme âgé désorienté, pull bleu, signalé par un commerçant."),
    ("Tapage sur la voie publique", "Groupe bruyant devant un café, plainte des riverains."),
)


@dataclass(frozen=True, slots=True)
class Landmark:
    name: str
    lat: float
    lon: float
    t: float  # route time (within a lap) when the vehicle passes it


@dataclass(frozen=True, slots=True)
class DemoCall:
    call_id: str
    priority: int
    nature: str
    details: str
    address: str
    lat: float
    lon: float
    eta_s: float  # seconds of driving until the vehicle reaches it
    distance_m: float  # as the crow flies, from where the vehicle is

    def step_args(self) -> dict[str, object]:
        """The rig's ``call`` step for this call."""
        return {"call_id": self.call_id, "priority": self.priority, "nature": self.nature, "address": self.address,
                "location": {"lat": self.lat, "lon": self.lon}, "details": self.details, "code": None}


# A named point that says where it is (a street, a crossroads) can be an address; "Feu
# tricolore" alone cannot.
STREET_WORDS = ("av.", "avenue", "bd ", "boulevard", "corniche", "carrefour", "trémie", "rue", "place")


def landmarks(route: Route) -> list[Landmark]:
    """The route's named points that make an address, with the time the vehicle passes each, in lap order."""
    named = [p for p in route.points if p.name and any(w in p.name.lower() for w in STREET_WORDS)]
    best: dict[int, tuple[float, float]] = {}  # index in named -> (distance, t)
    steps = int(route.duration_s / SAMPLE_S) + 1
    for k in range(steps):
        state = route.at(k * SAMPLE_S)
        for i, p in enumerate(named):
            d = distance_m(state.lat, state.lon, p.lat, p.lon)
            if i not in best or d < best[i][0]:
                best[i] = (d, k * SAMPLE_S)
    marks = {(p.name, p.lat, p.lon): Landmark(p.name or "", p.lat, p.lon, best[i][1]) for i, p in enumerate(named)}
    return sorted(marks.values(), key=lambda m: m.t)


class CallPlanner:
    """Makes each ``call N`` of the demo a distinct incident ahead of the vehicle."""

    def __init__(self, route: Route, city: str = "Kénitra"):
        self.route = route
        self.city = city
        self.marks = landmarks(route)
        self.count = 0

    def next_call(self, route_t: float, priority: int, busy: set[str] = frozenset()) -> DemoCall:  # type: ignore[assignment]
        """The next call at route time ``route_t``; ``busy``: addresses of calls still open."""
        self.count += 1
        nature, details = INCIDENTS[(self.count - 1) % len(INCIDENTS)]
        lap = self.route.duration_s
        here = self.route.at(route_t)
        ahead = sorted(self.marks, key=lambda m: (m.t - route_t - LEAD_S) % lap)
        mark = next((m for m in ahead if self._address(m) not in busy), ahead[0])
        eta = (mark.t - route_t) % lap
        return DemoCall(call_id=f"C-DEMO-{self.count:04d}", priority=priority, nature=nature, details=details,
                        address=self._address(mark), lat=round(mark.lat, 6), lon=round(mark.lon, 6), eta_s=eta,
                        distance_m=distance_m(here.lat, here.lon, mark.lat, mark.lon))

    def _address(self, mark: Landmark) -> str:
        return f"{mark.name}, {self.city}"
