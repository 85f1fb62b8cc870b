"""icsmon sensor: capture, decode, flows, TCP reassembly, protocol dissection, events.

Depends on nothing else in icsmon. It only receives packets: there is no send path.
"""
