"""The VPC (infra/network.py): private subnets for the tasks, NAT and endpoints per config."""

from __future__ import annotations

import json

from tests.infra.harness import Graph, config_value, one, resources_of_type


def _routes(graph: Graph) -> dict[str, list[dict]]:
    """route table id -> its routes."""
    table_routes: dict[str, list[dict]] = {}
    for route in resources_of_type(graph, "aws:ec2/route:Route"):
        table_routes.setdefault(route.inputs["routeTableId"], []).append(route.inputs)
    return table_routes


def _table_of_subnet(graph: Graph) -> dict[str, str]:
    return {a.inputs["subnetId"]: a.inputs["routeTableId"]
            for a in resources_of_type(graph, "aws:ec2/routeTableAssociation:RouteTableAssociation")}


def test_tasks_run_in_private_subnets_without_public_ips(graph):
    service = one(graph, "aws:ecs/service:Service")
    network = service.inputs["networkConfiguration"]
    assert network["assignPublicIp"] is False
    igw_ids = {g.outputs["id"] for g in resources_of_type(graph, "aws:ec2/internetGateway:InternetGateway")}
    assert igw_ids
    routes, tables = _routes(graph), _table_of_subnet(graph)
    subnets = {s.outputs["id"]: s for s in resources_of_type(graph, "aws:ec2/subnet:Subnet")}
    assert all(s.inputs["mapPublicIpOnLaunch"] is False for s in subnets.values())
    task_subnets = network["subnets"]
    assert len(task_subnets) == int(config_value(graph, "availabilityZones")) >= 2
    for subnet_id in task_subnets:
        table_routes = routes.get(tables[subnet_id], [])
        assert not any(r.get("gatewayId") in igw_ids for r in table_routes), \
            f"task subnet {subnets[subnet_id].name} routes to the internet gateway"
        if config_value(graph, "natGateways") != "none":
            assert any(r.get("natGatewayId") for r in table_routes)
    zones = {subnets[s].inputs["availabilityZone"] for s in task_subnets}
    assert len(zones) == len(task_subnets), "task subnets must be in distinct zones"
    alb = one(graph, "aws:lb/loadBalancer:LoadBalancer")
    assert alb.inputs["internal"] is False
    for subnet_id in alb.inputs["subnets"]:
        assert any(r.get("gatewayId") in igw_ids for r in routes[tables[subnet_id]])
    assert not set(alb.inputs["subnets"]) & set(task_subnets)


def test_nat_gateways_and_endpoints_follow_the_stack_config(graph):
    strategy = config_value(graph, "natGateways")
    zones = int(config_value(graph, "availabilityZones"))
    nats = resources_of_type(graph, "aws:ec2/natGateway:NatGateway")
    assert len(nats) == {"one-per-az": zones, "single": 1, "none": 0}[strategy]
    # com.amazonaws.<region>.<service>, where <service> may hold a dot (ecr.api)
    endpoints = {e.inputs["serviceName"].split(".", 3)[-1]: e
                 for e in resources_of_type(graph, "aws:ec2/vpcEndpoint:VpcEndpoint")}
    assert endpoints["s3"].inputs["vpcEndpointType"] == "Gateway"
    interface = {k for k, e in endpoints.items() if e.inputs["vpcEndpointType"] == "Interface"}
    if config_value(graph, "vpcEndpoints") == "true":
        assert interface == {"ecr.api", "ecr.dkr", "logs", "secretsmanager"}
        assert all(endpoints[k].inputs["privateDnsEnabled"] is True for k in interface)
    else:
        assert interface == set()
    flow_logs = resources_of_type(graph, "aws:ec2/flowLog:FlowLog")
    assert len(flow_logs) == (1 if config_value(graph, "flowLogs") == "true" else 0)


def test_the_default_security_group_is_emptied(graph):
    default = one(graph, "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert default.inputs.get("ingress") == [] and default.inputs.get("egress") == []


def _endpoints(graph: Graph) -> dict[str, dict]:
    return {e.inputs["serviceName"].split(".", 3)[-1]: e
            for e in resources_of_type(graph, "aws:ec2/vpcEndpoint:VpcEndpoint")}


def test_with_endpoints_tasks_reach_only_the_endpoints_and_s3(graph):
    """Egress of the tasks' group: 443 to the endpoints' group and S3's prefix list when the
    interface endpoints exist (no path to the internet at all); 443 anywhere otherwise
    (through the NAT, which is then the only way to the AWS APIs)."""
    service = one(graph, "aws:ecs/service:Service")
    [task_sg] = service.inputs["networkConfiguration"]["securityGroups"]
    egress = [r.inputs for r in resources_of_type(
        graph, "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
        if r.inputs["securityGroupId"] == task_sg]
    assert egress and all(e["ipProtocol"] == "tcp" and e["fromPort"] == e["toPort"] == 443
                          for e in egress)
    endpoints = _endpoints(graph)
    if config_value(graph, "vpcEndpoints") == "true":
        [endpoint_sg] = {sg for k, e in endpoints.items() if k != "s3"
                         for sg in e.inputs["securityGroupIds"]}
        destinations = {(e.get("referencedSecurityGroupId"), e.get("prefixListId"),
                         e.get("cidrIpv4")) for e in egress}
        assert destinations == {(endpoint_sg, None, None),
                                (None, endpoints["s3"].outputs["prefixListId"], None)}
    else:
        assert [e.get("cidrIpv4") for e in egress] == ["0.0.0.0/0"]


def test_endpoint_policies_allow_the_stacks_buckets_and_this_accounts_principals(graph):
    endpoints = _endpoints(graph)
    [s3] = json.loads(endpoints["s3"].inputs["policy"])["Statement"]
    assert s3["Action"] == "s3:GetObject"
    assert sorted(s3["Resource"]) == sorted([
        f"arn:aws:s3:::ml-app-{graph.stack}-*/*",
        f"arn:aws:s3:::prod-{graph.config['aws:region']}-starport-layer-bucket/*"])
    account = one(graph, "aws:kms/key:Key").outputs["arn"].split(":")[4]
    for name, endpoint in endpoints.items():
        if name == "s3":
            continue
        [statement] = json.loads(endpoint.inputs["policy"])["Statement"]
        assert statement["Action"] == f"{name.split('.')[0]}:*"
        assert statement["Condition"] == {"StringEquals": {"aws:PrincipalAccount": account}}
