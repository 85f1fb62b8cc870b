"""The detection report: the rule pack over every shared capture, checked against a reviewed table.

The table below is the review: for each attack capture (decided from its name, the capture index
and what is in it), the rules it must raise; for each benign capture (normal polling and reads),
that no rule of level high or critical fires. The report itself is written to
``build/reports/detections.md`` (the figures the README summarises), together with the engine
benchmark: events/s with the pack and with 1,000 rules. There are no timing assertions.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.detection_report import (
    BENCH_CAPTURES,
    DEFAULT_PLACEHOLDERS,
    PACK,
    REPORT,
    Expectation,
    bench_events,
    benchmark,
    build_report,
    render_bench,
    render_markdown,
    shared_captures,
    shared_root,
    variants,
    write_report,
)
from analyzer.sigma import RuleSet, load_placeholders

A, B = "attack", "benign"
EXPECTATIONS = (
    # -- Modbus
    Expectation("iti/pcaps/ModbusTCP/modbus_test_data_part1.pcap", A,
                ("modbus_restart_communications", "modbus_force_listen_only", "decode_error_ics_framing")),
    Expectation("iti/pcaps/ModbusTCP/modbus_test_data_part2.pcap", A, ("modbus_function_code_scan",),
                "every function code 0-127 and more, from one client"),
    Expectation("iti/pcaps/bro/modbus/modbusBig.pcap", A, ("modbus_brute_force_io",),
                "coil 1 toggled 24 times a second"),
    Expectation("iti/pcaps/bro/modbus/fuzz-1011.pcap", A, ("ics_malformed_request",), "fuzzed Modbus requests"),
    Expectation("iti/pcaps/bro/modbus/fuzz-72.pcap", A, ("flow_tcp_sequence_jump",), "fuzzed TCP segments"),
    Expectation("iti/pcaps/modicon/modicon_test.pcap", A, ("modbus_umas_unexpected_host",)),
    Expectation("suricata-verify/tests/modbus/modbus.pcap", A,
                ("modbus_restart_communications", "modbus_force_listen_only")),
    Expectation("iti/pcaps/ModbusTCP/Modbus/modbus_test_2.pcap", B, note="input and holding register polling"),
    # -- DNP3
    Expectation("iti/pcaps/dnp3/cold_restart_and_response.pcap", A, ("dnp3_restart",)),
    Expectation("iti/pcaps/dnp3/warm_restart_and_response.pcap", A, ("dnp3_restart",)),
    Expectation("iti/pcaps/dnp3/dnp3_test_data_part1.pcap", A, ("dnp3_stop_application", "dnp3_restart")),
    Expectation("iti/pcaps/dnp3/file_delete.pcap", A, ("dnp3_file_delete",)),
    Expectation("iti/pcaps/bro/dnp3/dnp3_file_del.pcap", A, ("dnp3_file_delete",)),
    Expectation("suricata-verify/tests/dnp3/dnp3-file-del/input.pcap", A, ("dnp3_file_delete",)),
    Expectation("iti/pcaps/dnp3/file_write.pcap", A, ("dnp3_file_write",)),
    Expectation("iti/pcaps/dnp3/file_read.pcap", A, ("dnp3_file_read",)),
    Expectation("iti/pcaps/dnp3/disable_unsolcited_and_response.pcap", A, ("dnp3_disable_unsolicited_unexpected",)),
    Expectation("iti/pcaps/dnp3/direct_operate_analog_output.pcap", A,
                ("dnp3_analog_output_command", "ics_unauthorized_write")),
    Expectation("iti/pcaps/dnp3/lan_time_sync.pcap", A, ("dnp3_time_set_unexpected",)),
    Expectation("suricata-verify/tests/dnp3/dnp3-flood/input.pcap", A, ("dnp3_request_flood", "dnp3_control_burst")),
    Expectation("iti/pcaps/openics/DNP3-Malformed.pcap", A, ("ics_protocol_anomaly_burst",)),
    Expectation("icsnpp-dnp3/testing/traces/dnp3_example.pcap", A, ("dnp3_control_burst",)),
    Expectation("iti/pcaps/dnp3/read_and_response.pcap", B),
    Expectation("iti/pcaps/openics/DNP3-Read.pcap", B),
    Expectation("iti/pcaps/bro/dnp3/dnp3_read.pcap", B),
    Expectation("iti/pcaps/bro/dnp3/dnp3_read_p20001.pcap", B, note="DNP3 on port 20001"),
    Expectation("iti/pcaps/bro/dnp3/dnp3_link_only.pcap", B),
    Expectation("iti/pcaps/dnp3/unsolcited_response_and_confirm.pcap", B),
    Expectation("iti/pcaps/dnp3/immediate_freeze.pcap", B),
    Expectation("suricata-verify/tests/dnp3/dnp3-toclient-start/dnp3_toclient_start.pcap", B),
    # -- S7comm
    Expectation("iti/pcaps/s7/snap7_s300_stop.pcapng", A, ("s7_plc_stop",)),
    Expectation("iti/pcaps/s7/step7_s300_stop.pcapng", A, ("s7_plc_stop", "s7_cpu_entered_stop")),
    Expectation("iti/pcaps/s7/step7_s300_download.pcapng", A,
                ("s7_program_download", "ics_program_transfer_unexpected_host")),
    Expectation("iti/pcaps/s7/s7comm_downloading_block_db1.pcap", A,
                ("s7_program_download", "ics_program_transfer_unexpected_host", "s7_pg_connection_unexpected_host")),
    Expectation("icsnpp-s7comm/tests/traces/snap7.pcap", A,
                ("s7_plc_stop", "s7_plc_start", "s7_program_upload", "s7_identification_unexpected_host",
                 "s7_set_clock_unexpected", "ics_identify_then_disrupt")),
    Expectation("iti/pcaps/s7/snap7_s300_everything.pcapng", A,
                ("s7_plc_stop", "s7_program_upload", "ics_program_transfer_unexpected_host")),
    Expectation("icsnpp-s7comm/tests/traces/s7ident.pcap", A, ("s7_identification_unexpected_host",)),
    Expectation("iti/pcaps/s7/s7comm_reading_setting_plc_time.pcap", A, ("s7_set_clock_unexpected",)),
    Expectation("iti/pcaps/s7/S7Comm/s7comm_clean.pcap", B, note="read var polling"),
    Expectation("iti/pcaps/s7/step7_s300_readVarTab.pcapng", B, note="variable table monitoring"),
    Expectation("iti/pcaps/s7/step7_s300_readDiagData.pcapng", B),
    Expectation("iti/pcaps/s7/s7comm_reading_plc_status.pcap", B),
    Expectation("iti/pcaps/s7/s7comm_program_blocklist_onlineview.pcap", B),
    Expectation("iti/pcaps/s7/snap7_s300_readVar.pcapng", B),
    # -- EtherNet/IP and CIP
    Expectation("iti/pcaps/EthernetIP/cip_stop_plc.pcap", A, ("enip_cip_stop",)),
    Expectation("iti/pcaps/EthernetIP/cip_start_plc.pcap", A, ("enip_cip_start",)),
    Expectation("iti/pcaps/CIP/cip_only.pcap", A, ("enip_pccc_mode_change",)),
    Expectation("icsnpp-enip/tests/traces/set_attribute_single_service_cip.pcapng", A, ("enip_attribute_write",)),
    Expectation("icsnpp-enip/tests/traces/multiple_service_packet_cip.pcapng", B),
    Expectation("iti/pcaps/EthernetIP/cip-multiple-1.pcap", B),
    Expectation("iti/pcaps/EthernetIP/cip-multiple-2.pcap", B),
    Expectation("iti/pcaps/EthernetIP/enip_test.pcap", B),
    Expectation("suricata-verify/tests/enip-alert/enip_test1.pcap", B),
    # -- IEC 104
    Expectation("iti/pcaps/IEC60870-5-104/TestDissectIec104.pcap", A,
                ("iec104_command_unexpected_station", "iec104_clock_sync_unexpected")),
    Expectation("iti/pcaps/IEC60870-5-104/JavaRMI_and_IEC_Misc.pcap", B, note="interrogation and spontaneous data"),
    # -- BACnet
    Expectation("icsnpp-bacnet/testing/traces/bacnet_services.pcap", A,
                ("bacnet_reinitialize_device", "bacnet_dcc_disable", "bacnet_file_write_then_reinitialize")),
    Expectation("icsnpp-bacnet/testing/traces/bacnet_error_reject_abort.pcap", A,
                ("bacnet_object_delete", "bacnet_dcc_disable", "bacnet_reinitialize_device")),
    Expectation("icsnpp-bacnet/testing/traces/bacnet_example.pcap", A, ("bacnet_backup_restore",)),
    Expectation("iti/pcaps/BACnet/bacnet_test.pcap", B, note="a foreign device polls through a BBMD"),
    Expectation("icsnpp-bacnet/testing/traces/bacnet_segmented_data.pcap", B),
)


@pytest.fixture(scope="module")
def report():
    report = build_report(expectations=EXPECTATIONS)
    write_report(report)
    return report


def test_every_shared_capture_of_the_six_protocols_is_evaluated(report) -> None:
    captures = {c.capture for c in report.captures}
    assert len(captures) == len(shared_captures()) >= 100
    assert not any(name in c for c in captures for name in ("opcua", "IEC61850", "MELSEC", "beckoff", "C37"))
    assert "iti/pcaps/bro/dnp3/dnp3_read_p20001.pcap" in captures  # by its name: Wireshark misses it
    assert {e.capture for e in EXPECTATIONS} <= captures
    assert report.load_errors == []
    assert sum(c.events for c in report.captures) > 50_000


def test_attack_captures_raise_their_detections_and_benign_ones_nothing_severe(report) -> None:
    assert report.failures == []
    attacks = [e for e in EXPECTATIONS if e.kind == A]
    benign = [e for e in EXPECTATIONS if e.kind == B]
    assert len(attacks) >= 35 and len(benign) >= 20
    assert all(e.rules for e in attacks) and not any(e.rules for e in benign)
    # Every protocol has reviewed captures of both kinds.
    for protocol in ("modbus", "dnp3", "s7comm", "enip", "iec104", "bacnet"):
        kinds = {e.kind for e in EXPECTATIONS if protocol in report.fired(e.capture).protocols}
        assert kinds == {A, B}, protocol


def test_the_report_file(report) -> None:
    text = REPORT.read_text()
    assert text == render_markdown(report)
    assert "## Reviewed expectations" in text and "FAILED" not in text
    for exp in EXPECTATIONS:
        assert f"`{exp.capture}`" in text
    for name in report.rules:
        assert f"| `{name}` |" in text
    fired = {name for c in report.captures for name in c.detections}
    assert len(fired) >= 45  # most rules fire on real traffic, the rest on their crafted fixtures


def test_expectations_really_check(report) -> None:
    """A wrong expectation shows up as a failure line (the check is not vacuous)."""
    from analyzer.detection_report import Report, check_expectations

    wrong = (Expectation("iti/pcaps/EthernetIP/cip_stop_plc.pcap", A, ("enip_cip_start",)),
             Expectation("iti/pcaps/s7/snap7_s300_stop.pcapng", B),
             Expectation("no/such.pcap", B))
    failures = check_expectations(Report(report.rules, report.captures, wrong))
    assert failures == [
        "iti/pcaps/EthernetIP/cip_stop_plc.pcap: attack capture did not raise enip_cip_start",
        "iti/pcaps/s7/snap7_s300_stop.pcapng: benign capture raised high/critical rules s7_plc_stop",
        "no/such.pcap: not among the captures evaluated",
    ]


# -- benchmark ------------------------------------------------------------------------------------------------

def test_variants_are_distinct_loadable_rules(tmp_path: Path) -> None:
    written = variants(150, tmp_path)
    assert written == 150
    ruleset = RuleSet.load([PACK, tmp_path], load_placeholders(DEFAULT_PLACEHOLDERS))
    assert ruleset.errors == []
    alerting = [r for r in ruleset.rules if r.output]
    assert len(alerting) == len(list(PACK.rglob("*.yml"))) + 150
    assert len({r.rule_id for r in ruleset.rules}) == len(ruleset.rules)
    # Variants change what they select: not 150 copies of the same predicates.
    sources = {r.source for r in ruleset.rules if r.kind == "rule" and r.name and "_v0" in r.name}
    assert len(sources) > 100


def test_engine_benchmark_with_the_pack_and_with_1000_rules(report) -> None:
    assert all((shared_root() / c).is_file() for c in BENCH_CAPTURES)
    events = bench_events()
    rows = benchmark(events, total=1000, repeat=1)
    small, large = rows
    assert int(large["rules"]) == 1000 and int(small["rules"]) == len(list(PACK.rglob("*.yml")))
    assert small["events"] == large["events"] == len(events) > 40_000
    assert small["cost_vs_pack"] == 1.0 and large["events_per_s"] > 0
    assert large["detections"] >= small["detections"] > 0
    report.bench = rows
    write_report(report)
    assert "## Engine benchmark" in REPORT.read_text()
    print("\n" + render_bench(rows))  # the figures, for the log
