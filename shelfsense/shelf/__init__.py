"""Shelf state and events: per-frame slot states become a debounced shelf state, events, MQTT messages.

Layer: above `recognition` (it reads `FrameResult` and `SlotState`), below `service` (which serves it over HTTP).
It never imports the service, the tools or the command line.

    tracker.py   debounced state per camera and slot, planogram compliance, the events it implies
    events.py    the bounded on-disk event log with ids, read by cursor and awaited by live readers
    store.py     the state file beside the disk cache: survives a restart, a corrupt one starts empty
    mqtt.py      the MQTT publisher: retained per-slot state, events, reconnect with a bounded outbox
    hub.py       the four together, as the service uses them
"""
