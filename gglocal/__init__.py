"""gglocal: a local AWS IoT Greengrass v2 runtime for developers — run real component recipes without AWS.

- ipc/        wire-compatible IPC server (event-stream RPC over a Unix socket) and one handler per operation
- nucleus/    what components observe of the nucleus: recipes, lifecycle, config store, deployments, secrets, shadows
- iotcore/    IoT Core stand-in: mosquitto with mutual TLS, the AWS CRT MQTT bridge, a durable offline spool
- fleet/      several runtimes on one machine as devices in thing groups
- packaging/  gdk-compatible `build` and `publish`
- cli.py      the `gglocal` command (`ggvision` adds the product's tools to the same commands)

It imports nothing of ggvision's components; its live view reads only the product's contract.
"""
