"""XML namespaces slicelab meets in RSpecs, and what it does with each extension.

:data:`EXTENSIONS` is the table the request parser consults for every element outside the
GENI v3 namespace: ``IGNORE`` drops it with a note, ``REFUSE`` refuses the request naming the
element (the extension changes the meaning of the request in a way slicelab cannot honour),
``HANDLED`` means the parser reads it itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "EMULAB",
    "EXTENSIONS",
    "GENI_V3",
    "PG_V2",
    "SLICELAB",
    "XSI",
    "Extension",
    "Treatment",
    "extension_for",
]

GENI_V3 = "http://www.geni.net/resources/rspec/3"
PG_V2 = "http://www.protogeni.net/resources/rspec/2"
PG_V01 = "http://www.protogeni.net/resources/rspec/0.1"
PG_V02 = "http://www.protogeni.net/resources/rspec/0.2"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
EMULAB = "http://www.protogeni.net/resources/rspec/ext/emulab/1"
OPENFLOW_V3 = "http://www.geni.net/resources/rspec/ext/openflow/3"
OPENFLOW_V4 = "http://www.geni.net/resources/rspec/ext/openflow/4"
SHARED_VLAN = "http://www.geni.net/resources/rspec/ext/shared-vlan/1"
STITCH = "http://hpn.east.isi.edu/rspec/ext/stitch/0.1/"
DELAY = "http://www.protogeni.net/resources/rspec/ext/delay/1"
SLICELAB = "urn:slicelab:rspec:ext:1"

REQUEST_SCHEMA_URL = "http://www.geni.net/resources/rspec/3/request.xsd"
MANIFEST_SCHEMA_URL = "http://www.geni.net/resources/rspec/3/manifest.xsd"
AD_SCHEMA_URL = "http://www.geni.net/resources/rspec/3/ad.xsd"

# Namespaces of RSpec formats that are not GENI v3, named in the refusal.
OTHER_FORMATS = {
    PG_V2: "ProtoGENI RSpec v2",
    PG_V01: "ProtoGENI RSpec 0.1",
    PG_V02: "ProtoGENI RSpec 0.2",
    "http://www.planet-lab.org/resources/sfa/rspec/1": "SFA/PlanetLab RSpec",
}


class Treatment(StrEnum):
    HANDLED = "handled"
    IGNORE = "ignore"
    REFUSE = "refuse"


@dataclass(frozen=True, slots=True)
class Extension:
    prefix: str
    treatment: Treatment
    reason: str


EXTENSIONS: dict[str, Extension] = {
    EMULAB: Extension("emulab", Treatment.IGNORE,
                      "Emulab hints other than emulab:xen are not used here"),
    SLICELAB: Extension("slicelab", Treatment.HANDLED, "slicelab's own extension"),
    OPENFLOW_V3: Extension("openflow", Treatment.REFUSE,
                           "OpenFlow slivers and controllers are not offered by this aggregate"),
    OPENFLOW_V4: Extension("openflow", Treatment.REFUSE,
                           "OpenFlow slivers and controllers are not offered by this aggregate"),
    SHARED_VLAN: Extension("sharedvlan", Treatment.REFUSE,
                           "shared VLANs are not offered; every link gets its own segment"),
    DELAY: Extension("delay", Treatment.REFUSE,
                     "delay nodes are not offered (link latency cannot be enforced here)"),
    STITCH: Extension("stitch", Treatment.IGNORE,
                      "stitching paths are ignored; this aggregate does not stitch"),
    "http://www.protogeni.net/resources/rspec/ext/jacks/1": Extension(
        "jacks", Treatment.IGNORE, "editor hints"),
    "http://www.protogeni.net/resources/rspec/ext/flack/1": Extension(
        "flack", Treatment.IGNORE, "editor hints"),
    "http://www.protogeni.net/resources/rspec/ext/client/1": Extension(
        "client", Treatment.IGNORE, "client hints"),
    "http://www.protogeni.net/resources/rspec/ext/apt-tour/1": Extension(
        "tour", Treatment.IGNORE, "profile description"),
    "http://www.planet-lab.org/resources/sfa/ext/planetlab/1": Extension(
        "planetlab", Treatment.IGNORE, "PlanetLab attributes are not used here"),
    "http://www.geni.net/resources/rspec/ext/opstate/1": Extension(
        "opstate", Treatment.IGNORE, "operational-state descriptions"),
}


def extension_for(namespace: str) -> Extension:
    """The treatment of ``namespace``; unknown extensions are ignored with a note."""
    known = EXTENSIONS.get(namespace)
    if known is not None:
        return known
    return Extension(namespace or "(no namespace)", Treatment.IGNORE, "unknown extension")
