"""Local stand-in for AWS IoT Core: mosquitto with mutual TLS, a CRT MQTT5 bridge, a durable spool."""

from .bridge import DEFAULT_MAX_MESSAGE_BYTES, IoTCoreBridge, IoTCoreError, MessageTooLargeError
from .broker import BrokerError, MosquittoBroker, find_mosquitto
from .pki import Pki, ensure_pki
from .spool import DiskSpool, SpooledMessage, SpoolFullError
from .topics import validate_topic, validate_topic_filter

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "BrokerError",
    "DiskSpool",
    "IoTCoreBridge",
    "IoTCoreError",
    "MessageTooLargeError",
    "MosquittoBroker",
    "Pki",
    "SpoolFullError",
    "SpooledMessage",
    "ensure_pki",
    "find_mosquitto",
    "validate_topic",
    "validate_topic_filter",
]
