"""The VPC (infra/network.py): private subnets for the tasks, NAT and endpoints per config."""

from __future__ import annotations

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
