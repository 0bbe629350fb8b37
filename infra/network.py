"""The VPC: public subnets for the load balancer, private subnets for the tasks.

Built from plain ``pulumi_aws`` resources rather than awsx's Vpc: under Pulumi's mocks an
awsx component is one opaque resource, and the tests must see every subnet, route and NAT
gateway to prove that tasks have no route from the internet.

Layout: the VPC range is cut into eight equal blocks; zone ``i`` gets public block ``i`` and
private block ``4 + i``. NAT gateways follow the stack's strategy (one per zone, a single one,
or none when VPC endpoints carry all of the tasks' AWS traffic). The S3 gateway endpoint is
always there (it is free, and image layers and model files then never cross a NAT).

Endpoint policies: through the S3 gateway endpoint only the stack's buckets and ECR's layer
bucket can be read (the private subnets' route sends all S3 traffic there, so a task cannot
reach any other bucket, NAT or not); the interface endpoints serve this account's
principals only. With interface endpoints on, the tasks' security group leaves only to the
endpoints' group and the S3 prefix list (infra/load_balancer.py).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.iam import Statement, policy_document, service_trust_policy
from infra.naming import StackNames
from infra.provider import AwsContext

# Interface endpoints the tasks need to start without NAT: image pull (ECR API and registry;
# layers come from S3 through the gateway endpoint), logs, and the API key secret.
INTERFACE_ENDPOINTS = ("ecr.api", "ecr.dkr", "logs", "secretsmanager")
# ECR keeps image layers in this AWS-owned bucket; pulls fetch them through S3.
ECR_LAYER_BUCKET = "prod-{region}-starport-layer-bucket"


@dataclass(frozen=True)
class TaskEgress:
    """Where the tasks may send HTTPS when the interface endpoints are on."""

    endpoint_security_group_id: pulumi.Output[str]
    s3_prefix_list_id: pulumi.Output[str]


@dataclass
class NetworkArgs:
    context: AwsContext
    names: StackNames                  # the flow log group's path
    cidr: str
    zone_count: int
    nat_gateways: str                  # one-per-az | single | none
    interface_endpoints: bool
    flow_logs: bool
    log_retention_days: int
    kms_key_arn: pulumi.Input[str]


class Network(pulumi.ComponentResource):
    """VPC, subnets, routes, NAT gateways, VPC endpoints and (optionally) flow logs."""

    vpc_id: pulumi.Output[str]
    public_subnet_ids: list[pulumi.Output[str]]
    private_subnet_ids: list[pulumi.Output[str]]
    task_egress: TaskEgress | None       # None: HTTPS anywhere (through the NAT)

    def __init__(self, name: str, args: NetworkArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-app:infra:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        zones = aws.get_availability_zones_output(
            state="available",
            # Skip Local and Wavelength Zones: they lack Fargate.
            filters=[aws.GetAvailabilityZonesFilterArgs(name="opt-in-status",
                                                        values=["opt-in-not-required"])],
            opts=pulumi.InvokeOptions(parent=self)).names

        vpc, igw, public_rt = _vpc(name, args, child)
        self.vpc_id = vpc.id

        self.public_subnet_ids, self.private_subnet_ids = [], []
        private_route_tables: list[aws.ec2.RouteTable] = []
        nat_ids: list[pulumi.Output[str]] = []
        for i in range(args.zone_count):
            public, private, route_table = _zone(
                name, args, i, zones.apply(lambda names, i=i: names[i]), vpc, public_rt, child)
            self.public_subnet_ids.append(public.id)
            self.private_subnet_ids.append(private.id)
            private_route_tables.append(route_table)
            if args.nat_gateways == "one-per-az" or (args.nat_gateways == "single" and i == 0):
                nat_ids.append(_nat_gateway(name, i, public, igw, child))
            if nat_ids:
                # A zone without its own NAT gateway uses the first one (strategy "single").
                aws.ec2.Route(f"{name}-private-{i}-default", route_table_id=route_table.id,
                              destination_cidr_block="0.0.0.0/0",
                              nat_gateway_id=nat_ids[min(i, len(nat_ids) - 1)], opts=child)

        s3_endpoint = aws.ec2.VpcEndpoint(
            f"{name}-s3", vpc_id=vpc.id, vpc_endpoint_type="Gateway",
            service_name=f"com.amazonaws.{args.context.region}.s3",
            route_table_ids=[rt.id for rt in private_route_tables],
            policy=policy_document(s3_endpoint_statements(args)),
            tags={"Name": f"{name}-s3"}, opts=child)
        self.task_egress = None
        if args.interface_endpoints:
            endpoints_sg = _interface_endpoints(name, args, vpc, self.private_subnet_ids, child)
            self.task_egress = TaskEgress(endpoints_sg, s3_endpoint.prefix_list_id)
        if args.flow_logs:
            _flow_logs(name, args, vpc, child)

        self.register_outputs({"vpc_id": self.vpc_id,
                               "endpoints": args.interface_endpoints,
                               "public_subnet_ids": self.public_subnet_ids,
                               "private_subnet_ids": self.private_subnet_ids})


def _vpc(name: str, args: NetworkArgs, child: pulumi.ResourceOptions
         ) -> tuple[aws.ec2.Vpc, aws.ec2.InternetGateway, aws.ec2.RouteTable]:
    """The VPC with its default security group emptied, its internet gateway, and the
    public subnets' route table (default route to the internet gateway)."""
    vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=args.cidr, enable_dns_support=True,
                      enable_dns_hostnames=True,  # private DNS for interface endpoints
                      tags={"Name": name}, opts=child)
    # Take every rule away from the VPC's default security group, so that nothing attached
    # to it by mistake can talk to anything (CIS AWS Foundations 5.4).
    aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=vpc.id, ingress=[], egress=[],
                                 tags={"Name": f"{name}-default-unused"}, opts=child)
    igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags={"Name": name},
                                  opts=child)
    public_rt = aws.ec2.RouteTable(f"{name}-public", vpc_id=vpc.id,
                                   tags={"Name": f"{name}-public"}, opts=child)
    aws.ec2.Route(f"{name}-public-default", route_table_id=public_rt.id,
                  destination_cidr_block="0.0.0.0/0", gateway_id=igw.id, opts=child)
    return vpc, igw, public_rt


def _zone(name: str, args: NetworkArgs, i: int, zone: pulumi.Output[str], vpc: aws.ec2.Vpc,
          public_rt: aws.ec2.RouteTable, child: pulumi.ResourceOptions
          ) -> tuple[aws.ec2.Subnet, aws.ec2.Subnet, aws.ec2.RouteTable]:
    """Zone ``i``: public block ``i`` on the shared public route table, private block
    ``4 + i`` with its own route table (its default route goes to a NAT gateway)."""
    blocks = list(ipaddress.ip_network(args.cidr).subnets(prefixlen_diff=3))
    public = aws.ec2.Subnet(
        f"{name}-public-{i}", vpc_id=vpc.id, cidr_block=str(blocks[i]),
        availability_zone=zone,
        map_public_ip_on_launch=False,  # the ALB gets its addresses without this
        tags={"Name": f"{name}-public-{i}", "tier": "public"}, opts=child)
    aws.ec2.RouteTableAssociation(f"{name}-public-{i}", subnet_id=public.id,
                                  route_table_id=public_rt.id, opts=child)
    private = aws.ec2.Subnet(
        f"{name}-private-{i}", vpc_id=vpc.id, cidr_block=str(blocks[4 + i]),
        availability_zone=zone, map_public_ip_on_launch=False,
        tags={"Name": f"{name}-private-{i}", "tier": "private"}, opts=child)
    route_table = aws.ec2.RouteTable(f"{name}-private-{i}", vpc_id=vpc.id,
                                     tags={"Name": f"{name}-private-{i}"}, opts=child)
    aws.ec2.RouteTableAssociation(f"{name}-private-{i}", subnet_id=private.id,
                                  route_table_id=route_table.id, opts=child)
    return public, private, route_table


def _nat_gateway(name: str, i: int, public: aws.ec2.Subnet, igw: aws.ec2.InternetGateway,
                 child: pulumi.ResourceOptions) -> pulumi.Output[str]:
    eip = aws.ec2.Eip(f"{name}-nat-{i}", domain="vpc", tags={"Name": f"{name}-nat-{i}"},
                      opts=child)
    return aws.ec2.NatGateway(f"{name}-nat-{i}", allocation_id=eip.allocation_id,
                              subnet_id=public.id, tags={"Name": f"{name}-nat-{i}"},
                              opts=pulumi.ResourceOptions.merge(
                                  child, pulumi.ResourceOptions(depends_on=[igw]))).id


def s3_endpoint_statements(args: NetworkArgs) -> list[Statement]:
    """The S3 gateway endpoint's policy: reads of the stack's buckets (the model) and of
    ECR's layer bucket (image pulls), nothing else."""
    ctx = args.context
    return [{
        "Sid": "TheStacksBucketsAndEcrLayers",
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": [ctx.arn("s3", f"{bucket}/*", region=False, account=False) for bucket in
                     (f"{args.names.prefix}-*", ECR_LAYER_BUCKET.format(region=ctx.region))],
    }]


def interface_endpoint_statements(args: NetworkArgs, service: str) -> list[Statement]:
    """An interface endpoint's policy: the endpoint's service, for this account's principals
    only (no credentials from elsewhere ride our endpoints out)."""
    return [{
        "Sid": "ThisAccountsPrincipalsOnly",
        "Effect": "Allow",
        "Principal": "*",
        "Action": f"{service.split('.')[0]}:*",
        "Resource": "*",
        "Condition": {"StringEquals": {"aws:PrincipalAccount": args.context.account_id}},
    }]


def _interface_endpoints(name: str, args: NetworkArgs, vpc: aws.ec2.Vpc,
                         subnet_ids: list[pulumi.Output[str]],
                         child: pulumi.ResourceOptions) -> pulumi.Output[str]:
    sg = aws.ec2.SecurityGroup(f"{name}-endpoints", vpc_id=vpc.id,
                               description="HTTPS from inside the VPC to the AWS endpoints",
                               tags={"Name": f"{name}-endpoints"}, opts=child)
    aws.vpc.SecurityGroupIngressRule(f"{name}-endpoints-https", security_group_id=sg.id,
                                     description="HTTPS from the VPC", ip_protocol="tcp",
                                     from_port=443, to_port=443, cidr_ipv4=args.cidr,
                                     opts=child)
    for service in INTERFACE_ENDPOINTS:
        aws.ec2.VpcEndpoint(
            f"{name}-{service.replace('.', '-')}", vpc_id=vpc.id,
            vpc_endpoint_type="Interface",
            service_name=f"com.amazonaws.{args.context.region}.{service}",
            private_dns_enabled=True, subnet_ids=subnet_ids,
            policy=policy_document(interface_endpoint_statements(args, service)),
            security_group_ids=[sg.id], tags={"Name": f"{name}-{service}"}, opts=child)
    return sg.id


def _flow_logs(name: str, args: NetworkArgs, vpc: aws.ec2.Vpc,
               child: pulumi.ResourceOptions) -> None:
    ctx = args.context
    group = aws.cloudwatch.LogGroup(f"{name}-flow-logs",
                                    name=args.names.log_group("vpc-flow-logs"),
                                    retention_in_days=args.log_retention_days,
                                    kms_key_id=args.kms_key_arn, opts=child)
    role = aws.iam.Role(f"{name}-flow-logs",
                        description="VPC flow logs write to their log group",
                        path=args.names.service_role_path("vpc-flow-logs"),
                        assume_role_policy=service_trust_policy(
                            "vpc-flow-logs.amazonaws.com", ctx,
                            ctx.arn("ec2", "vpc-flow-log/*")),
                        opts=child)
    aws.iam.RolePolicy(f"{name}-flow-logs", role=role.id, policy=policy_document([{
        "Sid": "WriteTheFlowLogGroup",
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
        "Resource": [group.arn, pulumi.Output.concat(group.arn, ":log-stream:*")],
    }]), opts=child)
    aws.ec2.FlowLog(f"{name}-flow-logs", vpc_id=vpc.id, traffic_type="ALL",
                    log_destination_type="cloud-watch-logs", log_destination=group.arn,
                    iam_role_arn=role.arn, max_aggregation_interval=600,
                    tags={"Name": name}, opts=child)
