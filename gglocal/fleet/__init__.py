"""The local fleet: several `ggvision nucleus` runtimes on one machine, each a device (thing) in thing groups, on
one shared mosquitto, plus the local deployment service they follow (retained group-deployment/1.0 documents).
The rollout CLI's local backend drives it (rollout/backends/local.py)."""
