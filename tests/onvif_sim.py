"""A small ONVIF device for the tests: a loopback HTTP server answering the SOAP 1.2 operations `ggvision camera
probe|add` uses, with the response shapes the ONVIF WSDLs define, behind WS-Security UsernameToken digest auth.

    sim = OnvifSimulator(stream_uri="rtsp://127.0.0.1:8554/cam", user="admin", password="...")
    sim.start(); ...; sim.address  -> "onvif://127.0.0.1:PORT"; sim.calls -> ["GetServices", ...]; sim.stop()

What it matches (the WSDL operation names are those of the WSDLs onvif-zeep-async bundles, onvif/wsdl/):
- Device service, devicemgmt.wsdl (namespace http://www.onvif.org/ver10/device/wsdl), at /onvif/device_service,
  the fixed XAddr the ONVIF Core Specification gives the device service:
  GetSystemDateAndTime, GetServices (the service list with each XAddr and version; the client finds the media
  service here), GetCapabilities (the older way to find it), GetDeviceInformation (Manufacturer, Model,
  FirmwareVersion, SerialNumber, HardwareId).
- Media service, media.wsdl (http://www.onvif.org/ver10/media/wsdl), at /onvif/media_service:
  GetProfiles (tt:Profile with VideoSourceConfiguration and VideoEncoderConfiguration: Encoding, Resolution,
  RateControl/FrameRateLimit) and GetStreamUri (StreamSetup Stream=RTP-Unicast, Transport/Protocol=RTSP,
  ProfileToken -> tt:MediaUri with Uri, InvalidAfterConnect, InvalidAfterReboot, Timeout).
- Access classes (ONVIF Core Specification, "Security" → "User-based access control"): GetSystemDateAndTime,
  GetServices and GetCapabilities are PRE_AUTH and answered without credentials; the others need a user.
- Authentication (ONVIF Core Specification, "Security" → "Authentication" → WS-UsernameToken; OASIS Web Services
  Security UsernameToken Profile 1.0, section 3.1): wsse:UsernameToken with Password of Type #PasswordDigest =
  Base64(SHA-1(nonce + created + password)), nonce Base64 in wsse:Nonce, created in wsu:Created; a Created more
  than `max_skew_s` away from the device's clock is refused, as is a nonce seen before (replay).
- Faults (ONVIF Core Specification, "Error handling" → "Generic faults"; SOAP 1.2 Part 1, section 5.4): a refused
  user is env:Sender / ter:NotAuthorized ("Sender not Authorized") with HTTP 400; an unknown profile token is
  env:Sender / ter:InvalidArgVal / ter:NoProfile; an operation the device does not offer is
  env:Receiver / ter:ActionNotSupported.

Test knobs: `profiles` ([] for a device with none), `fault_on` (operation -> (subcodes, reason): answer that
operation with a fault), `calls` (operations answered, in order). WS-Discovery is not offered: it needs multicast
on a network of the test's own.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

from lxml import etree

ENV = "http://www.w3.org/2003/05/soap-envelope"
TDS = "http://www.onvif.org/ver10/device/wsdl"
TRT = "http://www.onvif.org/ver10/media/wsdl"
TT = "http://www.onvif.org/ver10/schema"
TER = "http://www.onvif.org/ver10/error"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DIGEST = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest"
PRE_AUTH = {"GetSystemDateAndTime", "GetServices", "GetCapabilities"}


@dataclass(frozen=True)
class Profile:
    token: str
    name: str
    encoding: str = "H264"
    width: int = 1280
    height: int = 720
    fps: int = 25


def _envelope(body: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<env:Envelope xmlns:env="{ENV}" xmlns:tds="{TDS}" '
            f'xmlns:trt="{TRT}" xmlns:tt="{TT}" xmlns:ter="{TER}"><env:Body>{body}</env:Body>'
            f"</env:Envelope>").encode()


def _fault(code: str, subcodes: list[str], reason: str) -> bytes:
    sub = ""
    for s in reversed(subcodes):  # nested: the first subcode is the outermost
        sub = f"<env:Subcode><env:Value>{s}</env:Value>{sub}</env:Subcode>"
    return _envelope(f"<env:Fault><env:Code><env:Value>{code}</env:Value>{sub}</env:Code>"
                     f'<env:Reason><env:Text xml:lang="en">{escape(reason)}</env:Text></env:Reason></env:Fault>')


class SoapFault(Exception):
    def __init__(self, status: int, code: str, subcodes: list[str], reason: str) -> None:
        super().__init__(reason)
        self.status, self.body = status, _fault(code, subcodes, reason)


class OnvifSimulator:
    def __init__(self, stream_uri: str, user: str, password: str, *, profiles: list[Profile] | None = None,
                 manufacturer: str = "ggvision", model: str = "SimCam 1", max_skew_s: float = 300.0) -> None:
        self.stream_uri, self.user, self.password = stream_uri, user, password
        self.profiles = [Profile("main", "mainStream"), Profile("sub", "subStream", width=640, height=360,
                                                                 fps=10)] if profiles is None else profiles
        self.manufacturer, self.model, self.max_skew_s = manufacturer, model, max_skew_s
        self.fault_on: dict[str, tuple[list[str], str]] = {}
        self.calls: list[str] = []
        self.refused: list[str] = []  # operations refused for their credentials
        self._nonces: set[str] = set()
        self._lock = threading.Lock()
        sim = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                status, body = sim._answer(self.path, self.rfile.read(length))
                self.send_response(status)
                self.send_header("Content-Type", "application/soap+xml; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # keep the test output quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="onvif-sim", daemon=True)

    @property
    def address(self) -> str:
        return f"onvif://127.0.0.1:{self.port}"

    def start(self) -> OnvifSimulator:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- SOAP ---------------------------------------------------------------------------------------------

    def _answer(self, path: str, raw: bytes) -> tuple[int, bytes]:
        try:
            doc = etree.fromstring(raw)
            body = doc.find(f"{{{ENV}}}Body")
            if body is None or not len(body):
                raise SoapFault(400, "env:Sender", [], "not a SOAP 1.2 envelope with a body")
            request = body[0]
            ns, op = etree.QName(request).namespace, etree.QName(request).localname
            service = {"/onvif/device_service": TDS, "/onvif/media_service": TRT}.get(path)
            if service is None or ns != service:
                raise SoapFault(400, "env:Receiver", ["ter:ActionNotSupported"], f"no {op} at {path}")
            if op not in PRE_AUTH:
                self._authenticate(doc, op)
            with self._lock:
                self.calls.append(op)
            if op in self.fault_on:
                subcodes, reason = self.fault_on[op]
                raise SoapFault(400, "env:Sender", subcodes, reason)
            handler = getattr(self, f"_{op}", None)
            if handler is None:
                raise SoapFault(400, "env:Receiver", ["ter:ActionNotSupported"], f"{op} is not supported")
            return 200, _envelope(handler(request))
        except SoapFault as f:
            return f.status, f.body
        except etree.XMLSyntaxError:
            return 400, _fault("env:Sender", ["ter:WellFormed"], "the request is not well-formed XML")

    def _authenticate(self, doc: etree._Element, op: str) -> None:
        token = doc.find(f"{{{ENV}}}Header/{{{WSSE}}}Security/{{{WSSE}}}UsernameToken")
        ok = False
        if token is not None:
            user = token.findtext(f"{{{WSSE}}}Username")
            pw = token.find(f"{{{WSSE}}}Password")
            nonce = token.findtext(f"{{{WSSE}}}Nonce") or ""
            created = token.findtext(f"{{{WSU}}}Created") or ""
            if user == self.user and pw is not None and pw.get("Type") == DIGEST and self._fresh(created):
                digest = base64.b64encode(hashlib.sha1(base64.b64decode(nonce) + created.encode()
                                                       + self.password.encode()).digest()).decode()
                with self._lock:
                    ok = digest == (pw.text or "") and nonce not in self._nonces
                    self._nonces.add(nonce)
        if not ok:
            with self._lock:
                self.refused.append(op)
            raise SoapFault(400, "env:Sender", ["ter:NotAuthorized"], "Sender not Authorized")

    def _fresh(self, created: str) -> bool:
        try:
            when = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
        except ValueError:
            return False
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        return abs((dt.datetime.now(dt.timezone.utc) - when).total_seconds()) <= self.max_skew_s

    # -- device service -------------------------------------------------------------------------------------

    def _GetSystemDateAndTime(self, _: etree._Element) -> str:  # noqa: N802 - the ONVIF operation names
        n = dt.datetime.now(dt.timezone.utc)
        return ("<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime><tt:DateTimeType>NTP</tt:DateTimeType>"
                "<tt:DaylightSavings>false</tt:DaylightSavings><tt:UTCDateTime>"
                f"<tt:Time><tt:Hour>{n.hour}</tt:Hour><tt:Minute>{n.minute}</tt:Minute><tt:Second>{n.second}"
                f"</tt:Second></tt:Time><tt:Date><tt:Year>{n.year}</tt:Year><tt:Month>{n.month}</tt:Month>"
                f"<tt:Day>{n.day}</tt:Day></tt:Date></tt:UTCDateTime></tds:SystemDateAndTime>"
                "</tds:GetSystemDateAndTimeResponse>")

    def _xaddr(self, service: str) -> str:
        return f"http://127.0.0.1:{self.port}/onvif/{service}"

    def _GetServices(self, _: etree._Element) -> str:  # noqa: N802
        services = "".join(
            f"<tds:Service><tds:Namespace>{ns}</tds:Namespace><tds:XAddr>{self._xaddr(s)}</tds:XAddr>"
            "<tds:Version><tt:Major>2</tt:Major><tt:Minor>60</tt:Minor></tds:Version></tds:Service>"
            for ns, s in ((TDS, "device_service"), (TRT, "media_service")))
        return f"<tds:GetServicesResponse>{services}</tds:GetServicesResponse>"

    def _GetCapabilities(self, _: etree._Element) -> str:  # noqa: N802
        return ("<tds:GetCapabilitiesResponse><tds:Capabilities>"
                f"<tt:Device><tt:XAddr>{self._xaddr('device_service')}</tt:XAddr></tt:Device>"
                f"<tt:Media><tt:XAddr>{self._xaddr('media_service')}</tt:XAddr><tt:StreamingCapabilities>"
                "<tt:RTPMulticast>false</tt:RTPMulticast><tt:RTP_TCP>true</tt:RTP_TCP>"
                "<tt:RTP_RTSP_TCP>true</tt:RTP_RTSP_TCP></tt:StreamingCapabilities></tt:Media>"
                "</tds:Capabilities></tds:GetCapabilitiesResponse>")

    def _GetDeviceInformation(self, _: etree._Element) -> str:  # noqa: N802
        return (f"<tds:GetDeviceInformationResponse><tds:Manufacturer>{self.manufacturer}</tds:Manufacturer>"
                f"<tds:Model>{self.model}</tds:Model><tds:FirmwareVersion>1.0.0</tds:FirmwareVersion>"
                "<tds:SerialNumber>SIM-0001</tds:SerialNumber><tds:HardwareId>sim</tds:HardwareId>"
                "</tds:GetDeviceInformationResponse>")

    # -- media service ---------------------------------------------------------------------------------------

    def _GetProfiles(self, _: etree._Element) -> str:  # noqa: N802
        out = []
        for p in self.profiles:
            out.append(
                f'<trt:Profiles token="{p.token}" fixed="true"><tt:Name>{p.name}</tt:Name>'
                '<tt:VideoSourceConfiguration token="vsc"><tt:Name>video source</tt:Name><tt:UseCount>2'
                '</tt:UseCount><tt:SourceToken>vs</tt:SourceToken><tt:Bounds x="0" y="0" width="1280" '
                'height="720"/></tt:VideoSourceConfiguration>'
                f'<tt:VideoEncoderConfiguration token="vec-{p.token}"><tt:Name>{p.name}</tt:Name>'
                f"<tt:UseCount>1</tt:UseCount><tt:Encoding>{p.encoding}</tt:Encoding><tt:Resolution>"
                f"<tt:Width>{p.width}</tt:Width><tt:Height>{p.height}</tt:Height></tt:Resolution>"
                "<tt:Quality>5</tt:Quality><tt:RateControl>"
                f"<tt:FrameRateLimit>{p.fps}</tt:FrameRateLimit><tt:EncodingInterval>1</tt:EncodingInterval>"
                "<tt:BitrateLimit>4096</tt:BitrateLimit></tt:RateControl><tt:Multicast><tt:Address>"
                "<tt:Type>IPv4</tt:Type><tt:IPv4Address>0.0.0.0</tt:IPv4Address></tt:Address><tt:Port>0"
                "</tt:Port><tt:TTL>1</tt:TTL><tt:AutoStart>false</tt:AutoStart></tt:Multicast>"
                "<tt:SessionTimeout>PT60S</tt:SessionTimeout></tt:VideoEncoderConfiguration></trt:Profiles>")
        return f"<trt:GetProfilesResponse>{''.join(out)}</trt:GetProfilesResponse>"

    def _GetStreamUri(self, request: etree._Element) -> str:  # noqa: N802
        token = request.findtext(f"{{{TRT}}}ProfileToken")
        stream = request.findtext(f"{{{TRT}}}StreamSetup/{{{TT}}}Stream")
        protocol = request.findtext(f"{{{TRT}}}StreamSetup/{{{TT}}}Transport/{{{TT}}}Protocol")
        if token not in {p.token for p in self.profiles}:
            raise SoapFault(400, "env:Sender", ["ter:InvalidArgVal", "ter:NoProfile"],
                            f"the profile {token!r} does not exist")
        if stream != "RTP-Unicast" or protocol not in ("RTSP", "TCP"):
            raise SoapFault(400, "env:Sender", ["ter:InvalidArgVal", "ter:InvalidStreamSetup"],
                            f"stream setup {stream}/{protocol} is not supported")
        uri = self.stream_uri if token == self.profiles[0].token else f"{self.stream_uri}?profile={token}"
        return (f"<trt:GetStreamUriResponse><trt:MediaUri><tt:Uri>{escape(uri)}</tt:Uri>"
                "<tt:InvalidAfterConnect>false</tt:InvalidAfterConnect><tt:InvalidAfterReboot>false"
                "</tt:InvalidAfterReboot><tt:Timeout>PT0S</tt:Timeout></trt:MediaUri></trt:GetStreamUriResponse>")
