"""Offline tools above the service (they use its public parts; the service never imports them).

capture.py        capture sources (devices, streams, video files, footage folders)
record.py         a source into a recording (`shelfsense record`)
agent.py          the camera agent (`shelfsense camera`), posting through shelfsense.client
replay.py         footage against a server as many cameras (`shelfsense replay`); replay_report.py its figures
modeltools.py     model inspect, eval and classify
dataset.py        the one reader of labelled image folders (grocery-store layout or class folders)
"""
