"""``gdk component publish`` (GDK 1.6.2) for built components, dependencies first.

Per component, as GDK does: region from the argument or ``publish.region``; account from STS;
bucket ``<publish.bucket>-<region>-<account>`` unless one is given (created if missing);
``NEXT_PATCH`` resolved from the first ``ListComponentVersions`` item (none: 1.0.0); every file of
``greengrass-build/artifacts/<name>/<version>/`` uploaded to ``s3://bucket/<name>/<version>/<file>``;
the built recipe rewritten to ``greengrass-build/recipes/<name>-<version>.<ext>`` and sent with
``CreateComponentVersion(inlineRecipe=...)``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

from gglocal.nucleus.dependencies import DependencyError, start_order

from .build import (
    BuildError,
    BuiltComponent,
    RecipeSchemas,
    check_built,
    check_size,
    ci_get,
    ci_set,
    dump_recipe,
    s3_artifacts,
    uri_file_name,
)
from .project import NEXT_PATCH, PackagingError

if TYPE_CHECKING:
    import boto3

FALLBACK_VERSION = "1.0.0"  # NEXT_PATCH when the account has no version of the component yet
ClientFactory = Callable[[str, str], Any]  # (service, region) -> boto3 client


class PublishError(PackagingError):
    """Publishing a component failed; the message names the component and the AWS call."""


@dataclass(frozen=True)
class PublishedComponent:
    name: str
    version: str  # resolved: never NEXT_PATCH
    arn: str  # the component version's ARN
    bucket: str
    region: str
    keys: tuple[str, ...]  # S3 keys uploaded (in a dry run: that would be uploaded)
    recipe_path: Path  # greengrass-build/recipes/<name>-<version>.<ext>
    dry_run: bool = False


def next_patch(version: str) -> str:
    """``1.2.3`` / ``1.2.3-rc.1+b5`` -> ``1.2.4`` (pre-release and build suffixes dropped, like GDK)."""
    major, minor, patch = version.split("-", 1)[0].split("+", 1)[0].split(".")[:3]
    return f"{major}.{minor}.{int(patch) + 1}"


def publish_all(built: Sequence[BuiltComponent], session: boto3.Session | None = None, bucket: str | None = None,
                region: str | None = None, *, options: Mapping[str, Any] | None = None,
                schemas: RecipeSchemas | None = None, dry_run: bool = False,
                client_factory: ClientFactory | None = None,
                console: Console | None = None) -> list[PublishedComponent]:
    """Publish ``built`` components in dependency order (dependencies before their dependents).

    ``bucket`` is used verbatim for every component; ``options`` replaces each project's
    ``publish.options`` (GDK's ``-o``). ``dry_run`` makes only read-only calls (STS, list versions,
    bucket location) and writes the publish recipes, but uploads and creates nothing.
    ``client_factory(service, region)`` builds the clients (default: from ``session``).
    """
    import boto3

    session = session or boto3.Session()
    publisher = _Publisher(session, client_factory, dry_run, console or Console(stderr=True), schemas)
    by_name = {b.name: b for b in built}
    regions = {}
    for b in built:
        regions[b.name] = region or b.project.publish_region
        if not regions[b.name]:
            raise PublishError(f"{b.project.config_file}: no region for {b.name}: set component.{b.name}."
                               "publish.region or pass --region")
    try:
        order = start_order({b.name: check_built(b, schemas) for b in built})
    except (BuildError, DependencyError) as exc:
        raise PublishError(str(exc)) from None

    results = []
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=publisher.console, transient=True) as progress:
        publisher.progress = progress
        task = progress.add_task("publishing", total=len(order))
        for name in order:
            progress.update(task, description=f"publishing {name}")
            results.append(publisher.publish(by_name[name], regions[name], bucket, options))
            progress.advance(task)
    return results


class _Publisher:
    def __init__(self, session: boto3.Session, factory: ClientFactory | None, dry_run: bool,
                 console: Console, schemas: RecipeSchemas | None) -> None:
        self.session = session
        self.schemas = schemas
        self.factory = factory or (lambda service, region: session.client(service, region_name=region))
        self.dry_run = dry_run
        self.console = console
        self.progress: Progress | None = None
        self._clients: dict[tuple[str, str], Any] = {}
        self._account: str | None = None
        self._buckets: dict[str, str] = {}  # bucket -> region it was checked (or created) in

    def log(self, message: str) -> None:
        (self.progress.console if self.progress else self.console).print(message)

    def client(self, service: str, region: str) -> Any:
        if (service, region) not in self._clients:
            self._clients[service, region] = self.factory(service, region)
        return self._clients[service, region]

    def account(self, region: str) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        if self._account is None:
            try:
                self._account = str(self.client("sts", region).get_caller_identity()["Account"])
            except (BotoCoreError, ClientError) as exc:
                raise PublishError(f"cannot identify the AWS account (sts GetCallerIdentity): {exc}") from None
        return self._account

    def component_arn(self, name: str, region: str) -> str:
        try:
            partition = self.session.get_partition_for_region(region)
        except Exception:  # unknown to this botocore: assume the commercial partition
            partition = "aws"
        return f"arn:{partition}:greengrass:{region}:{self.account(region)}:components:{name}"

    def resolve_version(self, b: BuiltComponent, arn: str, region: str) -> str:
        from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

        # GDK calls ListComponentVersions for every component (it checks the region that way), and
        # for NEXT_PATCH takes the first item: the service lists the highest version first.
        try:
            listed = self.client("greengrassv2", region).list_component_versions(arn=arn)
        except EndpointConnectionError:
            raise PublishError(f"{b.name}: cannot reach AWS IoT Greengrass in region {region!r}") from None
        except (BotoCoreError, ClientError) as exc:
            raise PublishError(f"{b.name}: greengrassv2 ListComponentVersions({arn}) failed: {exc}") from None
        if b.version != NEXT_PATCH:
            return b.version
        versions = listed.get("componentVersions") or []
        if not versions:
            return FALLBACK_VERSION
        return next_patch(versions[0]["componentVersion"])

    def ensure_bucket(self, bucket: str, region: str) -> None:
        """Like GDK: use the bucket if it is ours in ``region``, create it if missing, else fail."""
        from botocore.exceptions import BotoCoreError, ClientError

        if bucket in self._buckets:
            if self._buckets[bucket] != region:
                raise PublishError(f"bucket {bucket!r} is in {self._buckets[bucket]}, not {region}")
            return
        s3 = self.client("s3", region)
        try:
            location = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code == "AccessDenied":
                raise PublishError(f"bucket {bucket!r} already exists and is owned by someone else (AccessDenied "
                                   "on GetBucketLocation); choose another publish.bucket or --bucket") from None
            if code != "NoSuchBucket":
                raise PublishError(f"cannot check bucket {bucket!r}: {exc}") from None
            self._create_bucket(s3, bucket, region)
        except BotoCoreError as exc:
            raise PublishError(f"cannot check bucket {bucket!r}: {exc}") from None
        else:
            # us-east-1 reports no constraint; "EU" is the legacy name of eu-west-1.
            actual = {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(location, location)
            if actual != region:
                raise PublishError(f"bucket {bucket!r} already exists in region {actual}, not {region}; "
                                   "choose another bucket (--bucket) or region (--region)")
        self._buckets[bucket] = region

    def _create_bucket(self, s3: Any, bucket: str, region: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        if self.dry_run:
            self.log(f"would create bucket s3://{bucket} in {region}")
            return
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            s3.create_bucket(**kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise PublishError(f"cannot create bucket {bucket!r} in {region}: {exc}") from None
        self.log(f"created bucket s3://{bucket} in {region}")

    def upload(self, b: BuiltComponent, bucket: str, region: str, version: str,
               upload_args: Mapping[str, Any]) -> tuple[str, ...]:
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        entries = sorted(b.artifacts_dir.iterdir())
        folders = [p.name for p in entries if not p.is_file()]
        if folders:
            raise PublishError(f"{b.artifacts_dir}: only files are uploaded, found folder(s) {', '.join(folders)}")
        if not entries:
            return ()  # like GDK: no artifacts, no bucket check or creation
        self.ensure_bucket(bucket, region)
        keys = []
        for path in entries:
            key = f"{b.name}/{version}/{path.name}"
            keys.append(key)
            if self.dry_run:
                self.log(f"would upload {path} to s3://{bucket}/{key}")
                continue
            try:
                self.client("s3", region).upload_file(str(path), bucket, key, ExtraArgs=dict(upload_args))
            except (BotoCoreError, ClientError, S3UploadFailedError, ValueError) as exc:
                raise PublishError(f"{b.name}: upload of {path} to s3://{bucket}/{key} failed: {exc}") from None
            self.log(f"uploaded s3://{bucket}/{key}")
        return tuple(keys)

    def publish_recipe(self, b: BuiltComponent, bucket: str, version: str) -> Path:
        doc = b.document()
        if ci_get(doc, "ComponentName") != b.name:
            raise PublishError(f"{b.recipe_path}: not a build of {b.name}; run `ggvision build` first")
        ci_set(doc, "ComponentVersion", version)
        for artifact, key, where in s3_artifacts(doc):
            name = uri_file_name(artifact[key])
            if (b.artifacts_dir / name).is_file():
                artifact[key] = f"s3://{bucket}/{b.name}/{version}/{name}"
            else:  # GDK only warns: the URI may name an object that already exists
                self.log(f"[yellow]warning: {b.name}: {where} {artifact[key]!r}: no {name} in "
                         f"{b.artifacts_dir}; URI left as is[/yellow]")
        path = b.project.recipes_build_dir / f"{b.name}-{version}.{b.project.recipe_suffix}"
        path.write_text(dump_recipe(doc, b.project.recipe_suffix), encoding="utf-8")
        try:
            check_size(path, "published recipe")
            if self.schemas is not None:
                self.schemas.validate(doc, str(path))
        except BuildError as exc:
            raise PublishError(str(exc)) from None
        if b.out_dir is not None and (b.out_dir / "recipes").is_dir():
            copy = b.out_dir / "recipes" / path.name
            if not (copy.exists() and copy.samefile(path)):
                shutil.copyfile(path, copy)
        return path

    def publish(self, b: BuiltComponent, region: str, bucket: str | None,
                options: Mapping[str, Any] | None) -> PublishedComponent:
        from botocore.exceptions import BotoCoreError, ClientError

        if not b.artifacts_dir.is_dir():
            raise PublishError(f"{b.name} is not built ({b.artifacts_dir} is missing); run `ggvision build`")
        arn = self.component_arn(b.name, region)
        version = self.resolve_version(b, arn, region)
        bucket = bucket or f"{b.project.publish_bucket.strip()}-{region}-{self.account(region)}"
        opts = b.project.publish_options if options is None else options
        keys = self.upload(b, bucket, region, version, opts.get("file_upload_args") or {})
        recipe_path = self.publish_recipe(b, bucket, version)
        version_arn = f"{arn}:versions:{version}"
        if self.dry_run:
            self.log(f"would create {b.name} {version} from {recipe_path}")
        else:
            try:
                response = self.client("greengrassv2", region).create_component_version(
                    inlineRecipe=recipe_path.read_text(encoding="utf-8"))
            except (BotoCoreError, ClientError) as exc:
                raise PublishError(f"{b.name} {version}: greengrassv2 CreateComponentVersion failed: {exc}") from None
            version_arn = response.get("arn") or version_arn
            self.log(f"created {b.name} {version}")
        return PublishedComponent(b.name, version, version_arn, bucket, region, keys, recipe_path, self.dry_run)
