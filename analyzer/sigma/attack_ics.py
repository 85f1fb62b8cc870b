"""Our own ATT&CK for ICS technique list and the Sigma tag validator built on it (offline).

pySigma's ATT&CK validator downloads the Enterprise matrix at run time and so knows neither the
ICS tactics nor the T08nn techniques; icsmon rules are tagged with ATT&CK for ICS instead:

* ``attack.t0855`` -- a technique (:data:`TECHNIQUES`), upper-cased into ``Detection.techniques``;
* ``attack.impair-process-control`` (or ``attack.impair_process_control``) -- a tactic
  (:data:`TACTICS`), mapped to its name (``Impair Process Control``) in ``Detection.tactics``;
  the tactic id (``attack.ta0106``) is accepted too;
* ``attack.g0088`` / ``attack.s0604`` -- groups and software are accepted by form only.

The tables are facts of the ATT&CK for ICS matrix (v15 to v17 numbering); deprecated
techniques stay listed so that a rule using one gets "deprecated" instead of "unknown".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["TACTICS", "TECHNIQUES", "TagCheck", "Technique", "check_tags", "tactic_name", "technique_id"]


@dataclass(frozen=True, slots=True)
class Technique:
    id: str
    name: str
    tactics: tuple[str, ...]  # tactic short names, e.g. ("impair-process-control",)
    deprecated: bool = False


TACTICS: dict[str, tuple[str, str]] = {
    # short name: (tactic id, name)
    "initial-access": ("TA0108", "Initial Access"),
    "execution": ("TA0104", "Execution"),
    "persistence": ("TA0110", "Persistence"),
    "privilege-escalation": ("TA0111", "Privilege Escalation"),
    "evasion": ("TA0103", "Evasion"),
    "discovery": ("TA0102", "Discovery"),
    "lateral-movement": ("TA0109", "Lateral Movement"),
    "collection": ("TA0100", "Collection"),
    "command-and-control": ("TA0101", "Command and Control"),
    "inhibit-response-function": ("TA0107", "Inhibit Response Function"),
    "impair-process-control": ("TA0106", "Impair Process Control"),
    "impact": ("TA0105", "Impact"),
}
"""The twelve ATT&CK for ICS tactics."""

_TECHNIQUE_LIST: tuple[Technique, ...] = (
    Technique("T0800", "Activate Firmware Update Mode", ("inhibit-response-function",), False),
    Technique("T0801", "Monitor Process State", ("collection",), False),
    Technique("T0802", "Automated Collection", ("collection",), False),
    Technique("T0803", "Block Command Message", ("inhibit-response-function",), False),
    Technique("T0804", "Block Reporting Message", ("inhibit-response-function",), False),
    Technique("T0805", "Block Serial COM", ("inhibit-response-function",), False),
    Technique("T0806", "Brute Force I/O", ("impair-process-control",), False),
    Technique("T0807", "Command-Line Interface", ("execution",), False),
    Technique("T0808", "Control Device Identification", ("discovery",), True),
    Technique("T0809", "Data Destruction", ("inhibit-response-function",), False),
    Technique("T0810", "Data Historian Compromise", ("initial-access",), True),
    Technique("T0811", "Data from Information Repositories", ("collection",), False),
    Technique("T0812", "Default Credentials", ("lateral-movement",), False),
    Technique("T0813", "Denial of Control", ("impact",), False),
    Technique("T0814", "Denial of Service", ("inhibit-response-function",), False),
    Technique("T0815", "Denial of View", ("impact",), False),
    Technique("T0816", "Device Restart/Shutdown", ("inhibit-response-function",), False),
    Technique("T0817", "Drive-by Compromise", ("initial-access",), False),
    Technique("T0818", "Engineering Workstation Compromise", ("initial-access",), True),
    Technique("T0819", "Exploit Public-Facing Application", ("initial-access",), False),
    Technique("T0820", "Exploitation for Evasion", ("evasion",), False),
    Technique("T0821", "Modify Controller Tasking", ("execution",), False),
    Technique("T0822", "External Remote Services", ("initial-access",), False),
    Technique("T0823", "Graphical User Interface", ("execution",), False),
    Technique("T0824", "I/O Module Discovery", ("discovery",), True),
    Technique("T0825", "Location Identification", ("collection",), True),
    Technique("T0826", "Loss of Availability", ("impact",), False),
    Technique("T0827", "Loss of Control", ("impact",), False),
    Technique("T0828", "Loss of Productivity and Revenue", ("impact",), False),
    Technique("T0829", "Loss of View", ("impact",), False),
    Technique("T0830", "Adversary-in-the-Middle", ("collection",), False),
    Technique("T0831", "Manipulation of Control", ("impact",), False),
    Technique("T0832", "Manipulation of View", ("impact",), False),
    Technique("T0833", "Modify Control Logic", ("impair-process-control",), True),
    Technique("T0834", "Native API", ("execution",), False),
    Technique("T0835", "Manipulate I/O Image", ("inhibit-response-function",), False),
    Technique("T0836", "Modify Parameter", ("impair-process-control",), False),
    Technique("T0837", "Loss of Protection", ("impact",), False),
    Technique("T0838", "Modify Alarm Settings", ("inhibit-response-function",), False),
    Technique("T0839", "Module Firmware", ("persistence", "impair-process-control"), False),
    Technique("T0840", "Network Connection Enumeration", ("discovery",), False),
    Technique("T0841", "Network Service Scanning", ("discovery",), True),
    Technique("T0842", "Network Sniffing", ("discovery",), False),
    Technique("T0843", "Program Download", ("lateral-movement",), False),
    Technique("T0844", "Program Organization Units", ("execution",), True),
    Technique("T0845", "Program Upload", ("collection",), False),
    Technique("T0846", "Remote System Discovery", ("discovery",), False),
    Technique("T0847", "Replication Through Removable Media", ("initial-access",), False),
    Technique("T0848", "Rogue Master", ("initial-access",), False),
    Technique("T0849", "Masquerading", ("evasion",), False),
    Technique("T0850", "Role Identification", ("collection",), True),
    Technique("T0851", "Rootkit", ("evasion", "inhibit-response-function"), False),
    Technique("T0852", "Screen Capture", ("collection",), False),
    Technique("T0853", "Scripting", ("execution",), False),
    Technique("T0854", "Serial Connection Enumeration", ("discovery",), True),
    Technique("T0855", "Unauthorized Command Message", ("impair-process-control",), False),
    Technique("T0856", "Spoof Reporting Message", ("evasion", "impair-process-control"), False),
    Technique("T0857", "System Firmware", ("persistence", "inhibit-response-function"), False),
    Technique("T0858", "Change Operating Mode", ("execution", "evasion"), False),
    Technique("T0859", "Valid Accounts", ("persistence", "lateral-movement"), False),
    Technique("T0860", "Wireless Compromise", ("initial-access",), False),
    Technique("T0861", "Point & Tag Identification", ("collection",), False),
    Technique("T0862", "Supply Chain Compromise", ("initial-access",), False),
    Technique("T0863", "User Execution", ("execution",), False),
    Technique("T0864", "Transient Cyber Asset", ("initial-access",), False),
    Technique("T0865", "Spearphishing Attachment", ("initial-access",), False),
    Technique("T0866", "Exploitation of Remote Services", ("initial-access", "lateral-movement"), False),
    Technique("T0867", "Lateral Tool Transfer", ("lateral-movement",), False),
    Technique("T0868", "Detect Operating Mode", ("collection",), False),
    Technique("T0869", "Standard Application Layer Protocol", ("command-and-control",), False),
    Technique("T0870", "Detect Program State", ("collection",), True),
    Technique("T0871", "Execution through API", ("execution",), False),
    Technique("T0872", "Indicator Removal on Host", ("evasion",), False),
    Technique("T0873", "Project File Infection", ("persistence",), False),
    Technique("T0874", "Hooking", ("execution", "privilege-escalation"), False),
    Technique("T0875", "Change Program State", ("execution",), False),
    Technique("T0877", "I/O Image", ("collection",), False),
    Technique("T0878", "Alarm Suppression", ("inhibit-response-function",), False),
    Technique("T0879", "Damage to Property", ("impact",), False),
    Technique("T0880", "Loss of Safety", ("impact",), False),
    Technique("T0881", "Service Stop", ("inhibit-response-function",), False),
    Technique("T0882", "Theft of Operational Information", ("impact",), False),
    Technique("T0883", "Internet Accessible Device", ("initial-access",), False),
    Technique("T0884", "Connection Proxy", ("command-and-control",), False),
    Technique("T0885", "Commonly Used Port", ("command-and-control",), False),
    Technique("T0886", "Remote Services", ("initial-access", "lateral-movement"), False),
    Technique("T0887", "Wireless Sniffing", ("discovery", "collection"), False),
    Technique("T0888", "Remote System Information Discovery", ("discovery",), False),
    Technique("T0889", "Modify Program", ("persistence",), False),
    Technique("T0890", "Exploitation for Privilege Escalation", ("privilege-escalation",), False),
    Technique("T0891", "Hardcoded Credentials", ("lateral-movement", "persistence"), False),
    Technique("T0892", "Change Credential", ("inhibit-response-function",), False),
    Technique("T0893", "Data from Local System", ("collection",), False),
    Technique("T0894", "System Binary Proxy Execution", ("evasion",), False),
    Technique("T0895", "Autorun Image", ("execution",), False),
)
TECHNIQUES: dict[str, Technique] = {t.id: t for t in _TECHNIQUE_LIST}
"""ATT&CK for ICS techniques by id (``T0855``)."""

_TACTIC_BY_ID = {tid.lower(): short for short, (tid, _name) in TACTICS.items()}
_TECHNIQUE_RE = re.compile(r"t\d{4}(?:\.\d{3})?")
_GROUP_SOFTWARE_RE = re.compile(r"[gs]\d{4}")


def technique_id(tag_name: str) -> str | None:
    """``t0855`` -> ``T0855`` when it is an ICS technique, else None."""
    upper = tag_name.upper()
    return upper if upper in TECHNIQUES else None


def tactic_name(tag_name: str) -> str | None:
    """``impair-process-control``, ``impair_process_control`` or ``ta0106`` -> ``Impair Process Control``."""
    key = tag_name.lower().replace("_", "-")
    short = key if key in TACTICS else _TACTIC_BY_ID.get(key)
    return TACTICS[short][1] if short else None


@dataclass(frozen=True, slots=True)
class TagCheck:
    """What the ``attack.*`` tags of one rule say."""

    techniques: tuple[str, ...]  # ICS technique ids, upper case, in tag order
    tactics: tuple[str, ...]  # ICS tactic names, in tag order
    problems: tuple[str, ...]  # one line per bad tag


def check_tags(tags: Iterable[str]) -> TagCheck:
    """Read ``namespace.name`` tags; only the ``attack`` namespace is looked at."""
    techniques: list[str] = []
    tactics: list[str] = []
    problems: list[str] = []
    for tag in tags:
        namespace, _, name = tag.partition(".")
        if namespace.lower() != "attack" or not name:
            continue
        name = name.lower()
        if _TECHNIQUE_RE.fullmatch(name):
            tid = technique_id(name)
            if tid is None:
                problems.append(f"tag {tag}: {name.upper()} is not an ATT&CK for ICS technique"
                                " (Enterprise ids T1xxx are not used for ICS rules)")
                continue
            if TECHNIQUES[tid].deprecated:
                problems.append(f"tag {tag}: {tid} ({TECHNIQUES[tid].name}) is deprecated in ATT&CK for ICS")
            if tid not in techniques:
                techniques.append(tid)
            continue
        tname = tactic_name(name)
        if tname is not None:
            if tname not in tactics:
                tactics.append(tname)
            continue
        if _GROUP_SOFTWARE_RE.fullmatch(name):
            continue
        problems.append(f"tag {tag}: not an ATT&CK for ICS tactic, technique, group or software")
    return TagCheck(tuple(techniques), tuple(tactics), tuple(problems))
