"""deploy/cloudformation/dashboard.yaml: the dashboard's cloud infrastructure lints clean, keeps its promises, and
deploys into moto's CloudFormation (server mode, IAM enforced: tests/stack_dev.py's AuthMoto) on top of storage.yaml.

moto's CloudFormation has no AWS::Cognito::* and no AWS::WAFv2::* resources: the test makes the user pool, its
groups, domain and client, and the web ACL and its association, through moto's cognito-idp and wafv2 APIs with the
template's own properties, and deploys the rest with the template's references to them resolved to what it made.
moto also ignores security-group egress rules (inline and AWS::EC2::SecurityGroupEgress), an ECS service's launch
type, network configuration and load balancers, a task definition's NetworkMode and RequiresCompatibilities, lets
ListBucket through whatever its s3:prefix condition says, and evaluates DynamoDB permissions against resource "*"
only: those are checked on the template itself; S3 object access (IAM enforced), the listener, target group,
ingress rules, user pool and the task's environment are checked as deployed.
"""

from __future__ import annotations

import ast
import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from stack_dev import TEMPLATES, AuthMoto, moto_template

from cloud.local import template_doc
from dashboard.access import AccessSettings
from ggvision.contract import cloud as names
from ggvision.contract.keys import CLIPS, IMAGES, RULE_ARCHIVE_PREFIX

TEMPLATE = TEMPLATES / "dashboard.yaml"
HOST = "dashboard.example.com"
DOMAIN = "ggv-dash-test"
PREFIX = "ggvision"
SHOWN_PREFIXES = (f"{IMAGES}/", f"{CLIPS}/", f"{RULE_ARCHIVE_PREFIX}metrics/")  # what dashboard/data reads
MANAGED_GROUPS = {"AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet",
                  "AWSManagedRulesAmazonIpReputationList"}  # fmt: skip


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return template_doc(TEMPLATE)


def test_cfn_lint_clean() -> None:
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    if not cfn_lint.exists():
        pytest.skip(f"cfn-lint is not installed in this environment ({cfn_lint})")
    proc = subprocess.run([str(cfn_lint), "--format", "parseable", "--", str(TEMPLATE)], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _resolve(node: Any, values: dict[str, str]) -> Any:
    """Fn::Sub strings with the pseudo parameters and NamePrefix filled in (enough for the policy's ARNs)."""
    if isinstance(node, dict) and "Fn::Sub" in node and isinstance(node["Fn::Sub"], str):
        s = node["Fn::Sub"]
        for k, v in values.items():
            s = s.replace("${" + k + "}", v)
        return s
    return node


def test_task_role_reads_only_what_the_dashboard_shows(doc: dict[str, Any]) -> None:
    [policy] = doc["Resources"]["TaskRole"]["Properties"]["Policies"]
    statements = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    actions = {a for s in statements.values() for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert actions == {"dynamodb:Query", "dynamodb:GetItem", "dynamodb:DescribeTable", "s3:ListBucket",
                       "s3:GetObject", "kms:Decrypt"}, "read-only: no Scan, no writes"  # fmt: skip
    assert all(s["Effect"] == "Allow" and "*" not in json.dumps(s["Resource"]).replace("index/*", "") for s in
               statements.values() if s["Sid"] != "ReadShownObjects"), "every grant names its resource"  # fmt: skip
    values = {"AWS::Partition": "aws", "AWS::Region": "eu-west-1", "AWS::AccountId": "123456789012",
              "NamePrefix": PREFIX}  # fmt: skip
    tables = [_resolve(r, values) for r in statements["QueryEvents"]["Resource"]]
    arn = "arn:aws:dynamodb:eu-west-1:123456789012:table/"
    assert tables == [arn + names.table_name(PREFIX), f"{arn}{names.table_name(PREFIX)}/index/*",
                      arn + names.counts_table_name(PREFIX)]  # fmt: skip
    listed = statements["ListShownPrefixes"]["Condition"]["StringLike"]["s3:prefix"]
    assert listed == [p + "*" for p in SHOWN_PREFIXES]
    objects = [r["Fn::Sub"][0] for r in statements["ReadShownObjects"]["Resource"]]
    assert objects == ["${DataBucketArn}/" + p + "*" for p in SHOWN_PREFIXES]
    assert statements["DataKeyThroughS3"]["Condition"] == {
        "StringEquals": {"kms:ViaService": {"Fn::Sub": "s3.${AWS::Region}.amazonaws.com"}}}  # fmt: skip


def test_only_https_reaches_the_load_balancer_and_only_it_reaches_the_app(doc: dict[str, Any]) -> None:
    r = doc["Resources"]
    lb_in = r["LoadBalancerSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert sorted(i["FromPort"] for i in lb_in) == [80, 443]
    assert "SecurityGroupIngress" not in r["AppSecurityGroup"]["Properties"]
    ingress = [x["Properties"] for x in r.values() if x["Type"] == "AWS::EC2::SecurityGroupIngress"]
    assert ingress == [{"GroupId": {"Ref": "AppSecurityGroup"}, "IpProtocol": "tcp", "FromPort": 8501, "ToPort": 8501,
                        "SourceSecurityGroupId": {"Ref": "LoadBalancerSecurityGroup"},
                        "Description": "Streamlit, from the load balancer only"}]  # fmt: skip
    # egress (moto ignores it): the load balancer to Cognito (443) and the tasks (8501) only
    lb_out = r["LoadBalancerSecurityGroup"]["Properties"]["SecurityGroupEgress"] + [
        r["LoadBalancerToApp"]["Properties"]
    ]
    assert sorted(e["FromPort"] for e in lb_out) == [443, 8501]
    app_out = r["AppSecurityGroup"]["Properties"]["SecurityGroupEgress"]
    assert [(e["FromPort"], e["ToPort"]) for e in app_out] == [(443, 443)], "the tasks reach out on HTTPS only"
    assert r["Service"]["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "DISABLED"
    assert r["LoadBalancer"]["Properties"]["LoadBalancerAttributes"][0] == {
        "Key": "routing.http.drop_invalid_header_fields.enabled", "Value": "true"}  # fmt: skip


# ----------------------------------------------------------------------------------------------- in moto


def _substitute(node: Any, refs: dict[tuple[str, ...], str], text: dict[str, str]) -> Any:
    if isinstance(node, dict):
        if "Fn::GetAtt" in node and ("GetAtt", *node["Fn::GetAtt"]) in refs:
            return refs[("GetAtt", *node["Fn::GetAtt"])]
        if "Ref" in node and ("Ref", node["Ref"]) in refs:
            return refs[("Ref", node["Ref"])]
        if "Fn::Sub" in node and isinstance(node["Fn::Sub"], str):
            s = node["Fn::Sub"]
            for k, v in text.items():
                s = s.replace(k, v)
            return {"Fn::Sub": s}
        return {k: _substitute(v, refs, text) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, refs, text) for v in node]
    return node


class Deployed:
    def __init__(self, tmp: Path) -> None:
        self.moto = AuthMoto(tmp / "moto.log")
        self.storage = self.moto.deploy("ggvision-storage", moto_template(TEMPLATES / "storage.yaml"))
        ec2 = self.moto.client("ec2")
        self.vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
        self.subnets = [ec2.create_subnet(VpcId=self.vpc, CidrBlock=f"10.40.{i}.0/24",
                                          AvailabilityZone=f"us-east-1{'ab'[i % 2]}")["Subnet"]["SubnetId"]
                        for i in range(4)]  # fmt: skip
        doc = template_doc(TEMPLATE)
        self.doc = doc
        res = doc["Resources"]
        # moto's CloudFormation has no Cognito: the same user pool through its API
        idp = self.moto.client("cognito-idp")
        pp = res["UserPool"]["Properties"]
        self.pool = idp.create_user_pool(
            PoolName=f"{PREFIX}-dashboard", Policies=pp["Policies"], AdminCreateUserConfig=pp["AdminCreateUserConfig"],
            AutoVerifiedAttributes=pp["AutoVerifiedAttributes"], UsernameAttributes=pp["UsernameAttributes"],
            MfaConfiguration=pp["MfaConfiguration"])["UserPool"]  # fmt: skip
        for g in ("ViewerGroup", "OperatorGroup"):
            gp = res[g]["Properties"]
            idp.create_group(UserPoolId=self.pool["Id"], GroupName=gp["GroupName"], Description=gp["Description"],
                             Precedence=gp["Precedence"])  # fmt: skip
        idp.create_user_pool_domain(Domain=DOMAIN, UserPoolId=self.pool["Id"])
        cp = {k: v for k, v in res["UserPoolClient"]["Properties"].items() if k not in ("UserPoolId", "ClientName")}
        cp = _substitute(cp, {}, {"${DashboardHostName}": HOST})
        cp = {k: ([x["Fn::Sub"] for x in v] if k.endswith("URLs") else v) for k, v in cp.items()}
        self.client = idp.create_user_pool_client(UserPoolId=self.pool["Id"], ClientName=f"{PREFIX}-dashboard-alb",
                                                  **cp)["UserPoolClient"]  # fmt: skip
        provider = f"cognito-idp.us-east-1.amazonaws.com/{self.pool['Id']}"
        refs = {("GetAtt", "UserPool", "Arn"): self.pool["Arn"], ("Ref", "UserPool"): self.pool["Id"],
                ("Ref", "UserPoolClient"): self.client["ClientId"], ("Ref", "UserPoolDomain"): DOMAIN}  # fmt: skip
        trimmed = _substitute(copy.deepcopy(doc), refs, {"${UserPool.ProviderURL}": provider})
        for name in [
            k for k, v in trimmed["Resources"].items() if v["Type"].startswith(("AWS::Cognito::", "AWS::WAFv2::"))
        ]:
            del trimmed["Resources"][name]
        trimmed["Outputs"].pop("WebAclArn")
        cert = self.moto.client("acm").request_certificate(DomainName=HOST)["CertificateArn"]
        self.out = self.moto.deploy(
            f"{PREFIX}-dashboard",
            trimmed,
            {
                "VpcId": self.vpc,
                "PublicSubnetIds": ",".join(self.subnets[:2]),
                "PrivateSubnetIds": ",".join(self.subnets[2:]),
                "CertificateArn": cert,
                "DashboardHostName": HOST,
                "CognitoDomainPrefix": DOMAIN,
                "ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/dashboard:1",
            },
        )
        # ... nor WAFv2: the same web ACL through its API, associated with the deployed load balancer
        waf = self.moto.client("wafv2")
        wp = res["WebAcl"]["Properties"]
        limit = doc["Parameters"]["RateLimitPer5Min"]["Default"]
        rules = json.loads(json.dumps(wp["Rules"]).replace('{"Ref": "RateLimitPer5Min"}', str(limit)))
        vis = {**wp["VisibilityConfig"], "MetricName": f"{PREFIX}-dashboard"}
        acl = waf.create_web_acl(Name=f"{PREFIX}-dashboard", Scope=wp["Scope"], DefaultAction=wp["DefaultAction"],
                                 Rules=rules, VisibilityConfig=vis)["Summary"]  # fmt: skip
        waf.associate_web_acl(WebACLArn=acl["ARN"], ResourceArn=self.out["LoadBalancerArn"])


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    d = Deployed(tmp_path_factory.mktemp("dashboard-stack"))
    try:
        yield d
    finally:
        d.moto.stop()


def test_listener_authenticates_with_cognito_then_forwards(deployed: Deployed) -> None:
    elb = deployed.moto.client("elbv2")
    listeners = {x["Protocol"]: x for x in elb.describe_listeners(LoadBalancerArn=deployed.out["LoadBalancerArn"])[
        "Listeners"]}  # fmt: skip
    assert listeners["HTTP"]["DefaultActions"][0]["RedirectConfig"]["Protocol"] == "HTTPS"
    auth, forward = listeners["HTTPS"]["DefaultActions"]  # in order (moto drops the forward's Order)
    assert auth["Type"] == "authenticate-cognito" and forward["Type"] == "forward"
    cfg = auth["AuthenticateCognitoConfig"]
    assert (cfg["UserPoolArn"], cfg["UserPoolClientId"], cfg["UserPoolDomain"], cfg["OnUnauthenticatedRequest"]) == (
        deployed.pool["Arn"], deployed.client["ClientId"], DOMAIN, "authenticate")  # fmt: skip
    [tg] = elb.describe_target_groups(TargetGroupArns=[forward["TargetGroupArn"]])["TargetGroups"]
    assert (tg["Port"], tg["TargetType"], tg["HealthCheckPath"]) == (8501, "ip", "/_stcore/health")
    # the user pool: admin-made users only, the two groups the app maps to roles, a confidential code-flow client
    idp = deployed.moto.client("cognito-idp")
    groups = {g["GroupName"] for g in idp.list_groups(UserPoolId=deployed.pool["Id"])["Groups"]}
    assert groups == {"viewer", "operator"} == set(AccessSettings().viewer_groups + AccessSettings().operator_groups)
    assert deployed.client["ClientSecret"] and deployed.client["AllowedOAuthFlows"] == ["code"]
    assert deployed.client["CallbackURLs"] == [f"https://{HOST}/oauth2/idpresponse"]


def test_web_acl_of_managed_rule_groups_guards_the_load_balancer(deployed: Deployed) -> None:
    acl = deployed.moto.client("wafv2").get_web_acl_for_resource(ResourceArn=deployed.out["LoadBalancerArn"])["WebACL"]
    managed = {r["Statement"]["ManagedRuleGroupStatement"]["Name"] for r in acl["Rules"]
               if "ManagedRuleGroupStatement" in r["Statement"]}  # fmt: skip
    assert managed == MANAGED_GROUPS
    rate = [r for r in acl["Rules"] if "RateBasedStatement" in r["Statement"]]
    assert rate and rate[0]["Action"] == {"Block": {}}


def test_app_is_reachable_from_the_load_balancer_only(deployed: Deployed) -> None:
    ec2 = deployed.moto.client("ec2")
    groups = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [deployed.vpc]}])["SecurityGroups"]
    by_name = {g["GroupName"].split("-")[-2]: g for g in groups if g["GroupName"] != "default"}
    app, lb = by_name["AppSecurityGroup"], by_name["LoadBalancerSecurityGroup"]
    assert [(p["FromPort"], [u["GroupId"] for u in p["UserIdGroupPairs"]], p["IpRanges"]) for p in
            app["IpPermissions"]] == [(8501, [lb["GroupId"]], [])]  # fmt: skip
    svc = deployed.moto.client("ecs").describe_services(cluster=f"{PREFIX}-dashboard",
                                                        services=[f"{PREFIX}-dashboard"])["services"]  # fmt: skip
    assert [x["status"] for x in svc] == ["ACTIVE"]
    # moto's CloudFormation drops a service's launch type, network and load balancers: the template says them
    props = deployed.doc["Resources"]["Service"]["Properties"]
    assert props["LaunchType"] == "FARGATE" and props["NetworkConfiguration"]["AwsvpcConfiguration"] == {
        "AssignPublicIp": "DISABLED", "Subnets": {"Ref": "PrivateSubnetIds"},
        "SecurityGroups": [{"Ref": "AppSecurityGroup"}]}  # fmt: skip
    assert props["LoadBalancers"] == [{"ContainerName": "dashboard", "ContainerPort": 8501,
                                       "TargetGroupArn": {"Ref": "TargetGroup"}}]  # fmt: skip


def test_the_task_gets_the_settings_the_app_verifies_with(deployed: Deployed) -> None:
    """The deployed task definition's environment is a valid cloud-mode AccessSettings naming this load balancer."""
    ecs = deployed.moto.client("ecs")
    td = ecs.describe_task_definition(taskDefinition=f"{PREFIX}-dashboard")["taskDefinition"]
    [container] = td["containerDefinitions"]
    env = {e["name"]: e["value"] for e in container["environment"]}
    settings = AccessSettings.from_env(env)
    assert (settings.mode, settings.alb_arn, settings.region) == ("cloud", deployed.out["LoadBalancerArn"], "us-east-1")
    assert settings.cognito_issuer == f"https://cognito-idp.us-east-1.amazonaws.com/{deployed.pool['Id']}"
    assert env["GGVISION_DASHBOARD_TABLE"] == names.table_name(PREFIX)
    assert env["GGVISION_DASHBOARD_DATA_BUCKET"] == deployed.storage["DataBucketName"]
    assert container["command"][-3:] == ["dashboard.access", "run", "dashboard/app.py"]
    tdp = deployed.doc["Resources"]["TaskDefinition"]["Properties"]  # moto drops these two
    assert tdp["RequiresCompatibilities"] == ["FARGATE"] and tdp["NetworkMode"] == "awsvpc"


def test_task_role_may_read_shown_objects_and_nothing_else(deployed: Deployed) -> None:
    iam = deployed.moto.client("iam")
    [name] = iam.list_role_policies(RoleName=f"{PREFIX}-dashboard")["PolicyNames"]
    policy = iam.get_role_policy(RoleName=f"{PREFIX}-dashboard", PolicyName=name)["PolicyDocument"]
    if isinstance(policy, str):  # moto keeps a CloudFormation-made inline policy as the repr of a dict
        policy = json.loads(policy) if policy.startswith('{"') else ast.literal_eval(policy)
    creds = deployed.moto.credentials_for("dashboard-task", policy)
    admin, task = deployed.moto.client("s3"), deployed.moto.client("s3", creds)
    bucket = deployed.storage["DataBucketName"]
    for key in ("images/site1/thing1/cam1/a.jpg", "clips/site1/thing1/cam1/a.ts", "segments/site1/thing1/cam1/a.ts"):
        admin.put_object(Bucket=bucket, Key=key, Body=b"x")
    assert task.get_object(Bucket=bucket, Key="images/site1/thing1/cam1/a.jpg")["Body"].read() == b"x"
    assert task.get_object(Bucket=bucket, Key="clips/site1/thing1/cam1/a.ts")["Body"].read() == b"x"
    for denied in (lambda: task.get_object(Bucket=bucket, Key="segments/site1/thing1/cam1/a.ts"),
                   lambda: task.put_object(Bucket=bucket, Key="images/site1/thing1/cam1/b.jpg", Body=b"y"),
                   lambda: task.delete_object(Bucket=bucket, Key="images/site1/thing1/cam1/a.jpg")):  # fmt: skip
        with pytest.raises(ClientError, match="AccessDenied"):
            denied()
