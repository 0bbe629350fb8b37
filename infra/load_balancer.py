"""The Application Load Balancer in the public subnets, and the two security groups.

With a certificate (``certificateArn``, or one created and DNS-validated for ``domainName``
in ``hostedZoneId``) the ALB answers HTTPS with a modern TLS policy and redirects HTTP to
HTTPS; without one (allowed outside production only, with a warning) it forwards plain HTTP.
It drops requests with invalid header fields (request smuggling), and health-checks the
tasks on the app's readiness endpoint.

Security groups: the ALB accepts the configured client networks on 80 and 443 only and may
only talk to the tasks' group on the container port; the tasks accept only the ALB's group
on that port and may only leave on 443: to the VPC endpoints' group and S3's prefix list when
the interface endpoints exist, else to any address (AWS APIs through the NAT).

With audit logs on, the ALB writes its access logs to the stack's log bucket
(infra/audit_logs.py) under ``alb/``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Sequence

import pulumi
import pulumi_aws as aws

from infra.audit_logs import ALB_LOG_PREFIX
from infra.network import TaskEgress

# TLS 1.2 and 1.3 with forward-secret AEAD ciphers and post-quantum key exchange: AWS's
# current console default. Old clients without TLS 1.2 cannot connect, which is intended.
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09"
IDLE_TIMEOUT = 60            # seconds; the task's nginx keeps idle connections longer
                             # (SERVER_KEEPALIVE, 75 s), so the ALB closes them: no 502s
DEREGISTRATION_DELAY = 30    # seconds to drain a stopping task (requests take milliseconds)
HEALTH_CHECK_PATH = "/readyz"


@dataclass
class LoadBalancerArgs:
    vpc_id: pulumi.Input[str]
    public_subnet_ids: Sequence[pulumi.Input[str]]
    allowed_cidrs: Sequence[str]
    container_port: int
    certificate_arn: str | None = None
    domain_name: str | None = None
    hosted_zone_id: str | None = None
    deletion_protection: bool = True
    task_egress: TaskEgress | None = None          # None: HTTPS anywhere (NAT)
    access_log_bucket: pulumi.Input[str] | None = None
    access_log_ready: Sequence[pulumi.Resource] = ()   # the log bucket's policy


def _cidr_args(cidr: str) -> dict[str, str]:
    key = "cidr_ipv6" if ipaddress.ip_network(cidr).version == 6 else "cidr_ipv4"
    return {key: cidr}


class LoadBalancer(pulumi.ComponentResource):
    """ALB, listeners, target group, security groups, and optionally certificate and DNS."""

    alb: aws.lb.LoadBalancer
    target_group: aws.lb.TargetGroup
    service_security_group_id: pulumi.Output[str]
    url: pulumi.Output[str]
    https: bool

    def __init__(self, name: str, args: LoadBalancerArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-app:infra:LoadBalancer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        create_certificate = bool(args.domain_name and args.hosted_zone_id
                                  and not args.certificate_arn)
        self.https = bool(args.certificate_arn or create_certificate)
        alb_sg, task_sg = _security_groups(name, args, self.https, child)

        self.alb = aws.lb.LoadBalancer(
            f"{name}-alb", load_balancer_type="application", internal=False,
            subnets=list(args.public_subnet_ids), security_groups=[alb_sg.id],
            drop_invalid_header_fields=True, desync_mitigation_mode="defensive",
            enable_http2=True, idle_timeout=IDLE_TIMEOUT,
            enable_deletion_protection=args.deletion_protection,
            access_logs=aws.lb.LoadBalancerAccessLogsArgs(
                bucket=args.access_log_bucket, prefix=ALB_LOG_PREFIX, enabled=True)
            if args.access_log_bucket is not None else None,
            # ALB writes a test object when logging is enabled: the policy must be there.
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.access_log_ready)))
        self.target_group = aws.lb.TargetGroup(
            f"{name}-tg", target_type="ip", vpc_id=args.vpc_id, port=args.container_port,
            protocol="HTTP", deregistration_delay=DEREGISTRATION_DELAY,
            # Inference is CPU-bound with one sync worker per vCPU: send each request to the
            # task with the fewest in flight rather than round-robin.
            load_balancing_algorithm_type="least_outstanding_requests",
            health_check=aws.lb.TargetGroupHealthCheckArgs(
                enabled=True, path=HEALTH_CHECK_PATH, protocol="HTTP", port="traffic-port",
                matcher="200", interval=15, timeout=5, healthy_threshold=2,
                unhealthy_threshold=3),
            opts=child)
        certificate_arn = _certificate(name, args, child) if create_certificate \
            else args.certificate_arn
        _listeners(name, self.alb, self.target_group, certificate_arn if self.https else None,
                   parent=self)

        if args.domain_name and args.hosted_zone_id:
            aws.route53.Record(f"{name}-alias", zone_id=args.hosted_zone_id,
                               name=args.domain_name, type="A",
                               aliases=[aws.route53.RecordAliasArgs(
                                   name=self.alb.dns_name, zone_id=self.alb.zone_id,
                                   evaluate_target_health=True)],
                               opts=child)

        host = pulumi.Output.from_input(args.domain_name) if args.domain_name else self.alb.dns_name
        self.url = pulumi.Output.concat("https://" if self.https else "http://", host)
        self.service_security_group_id = task_sg.id
        self.register_outputs({"url": self.url, "alb_arn": self.alb.arn,
                               "target_group_arn": self.target_group.arn})


def _security_groups(name: str, args: LoadBalancerArgs, https: bool,
                     child: pulumi.ResourceOptions
                     ) -> tuple[aws.ec2.SecurityGroup, aws.ec2.SecurityGroup]:
    """The ALB's group (clients in on the listener ports, out to the tasks only) and the
    tasks' group (in from the ALB only, out on 443 only)."""
    port = args.container_port
    alb_sg = aws.ec2.SecurityGroup(f"{name}-alb", vpc_id=args.vpc_id,
                                   description="Load balancer: clients in, tasks out",
                                   tags={"Name": f"{name}-alb"}, opts=child)
    task_sg = aws.ec2.SecurityGroup(f"{name}-tasks", vpc_id=args.vpc_id,
                                    description="Service tasks: only from the load balancer",
                                    tags={"Name": f"{name}-tasks"}, opts=child)
    for i, cidr in enumerate(args.allowed_cidrs):
        for listener_port in (80, 443) if https else (80,):
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-alb-in-{listener_port}-{i}", security_group_id=alb_sg.id,
                description=f"clients on {listener_port}", ip_protocol="tcp",
                from_port=listener_port, to_port=listener_port, **_cidr_args(cidr),
                opts=child)
    aws.vpc.SecurityGroupEgressRule(
        f"{name}-alb-to-tasks", security_group_id=alb_sg.id,
        description="to the tasks' container port", ip_protocol="tcp",
        from_port=port, to_port=port, referenced_security_group_id=task_sg.id, opts=child)
    aws.vpc.SecurityGroupIngressRule(
        f"{name}-tasks-from-alb", security_group_id=task_sg.id,
        description="from the load balancer only", ip_protocol="tcp",
        from_port=port, to_port=port, referenced_security_group_id=alb_sg.id, opts=child)
    _task_egress(name, task_sg, args.task_egress, child)
    return alb_sg, task_sg


def _task_egress(name: str, task_sg: aws.ec2.SecurityGroup, egress: TaskEgress | None,
                 child: pulumi.ResourceOptions) -> None:
    """HTTPS out: to the endpoints and S3 when the stack has interface endpoints, else to
    the AWS APIs through the NAT (any address)."""
    https = {"ip_protocol": "tcp", "from_port": 443, "to_port": 443,
             "security_group_id": task_sg.id, "opts": child}
    if egress is None:
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-tasks-https-out", description="HTTPS to AWS APIs through the NAT",
            cidr_ipv4="0.0.0.0/0", **https)
        return
    aws.vpc.SecurityGroupEgressRule(
        f"{name}-tasks-to-endpoints", description="HTTPS to the VPC endpoints (ECR, Logs, "
        "Secrets Manager)", referenced_security_group_id=egress.endpoint_security_group_id,
        **https)
    aws.vpc.SecurityGroupEgressRule(
        f"{name}-tasks-to-s3", description="HTTPS to S3 through the gateway endpoint",
        prefix_list_id=egress.s3_prefix_list_id, **https)


def _listeners(name: str, alb: aws.lb.LoadBalancer, target_group: aws.lb.TargetGroup,
               certificate_arn: pulumi.Input[str] | None, parent: pulumi.Resource) -> None:
    """With a certificate: HTTPS forwarding, and HTTP redirecting to it. Without one
    (outside production only): HTTP forwarding, with a warning."""
    child = pulumi.ResourceOptions(parent=parent)
    forward = aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=target_group.arn)
    if certificate_arn is None:
        pulumi.log.warn("no certificate configured: the load balancer serves plain HTTP "
                        "(set certificateArn, or domainName and hostedZoneId)", parent)
        aws.lb.Listener(f"{name}-http", load_balancer_arn=alb.arn, port=80,
                        protocol="HTTP", default_actions=[forward], opts=child)
        return
    aws.lb.Listener(f"{name}-https", load_balancer_arn=alb.arn, port=443,
                    protocol="HTTPS", ssl_policy=TLS_POLICY,
                    certificate_arn=certificate_arn, default_actions=[forward], opts=child)
    aws.lb.Listener(f"{name}-http", load_balancer_arn=alb.arn, port=80,
                    protocol="HTTP", default_actions=[aws.lb.ListenerDefaultActionArgs(
                        type="redirect", redirect=aws.lb.ListenerDefaultActionRedirectArgs(
                            protocol="HTTPS", port="443", status_code="HTTP_301"))],
                    opts=child)


def _certificate(name: str, args: LoadBalancerArgs,
                 child: pulumi.ResourceOptions) -> pulumi.Output[str]:
    """An ACM certificate for the domain, validated through a record in its zone."""
    cert = aws.acm.Certificate(f"{name}-cert", domain_name=args.domain_name,
                               validation_method="DNS", key_algorithm="EC_prime256v1",
                               opts=child)
    option = cert.domain_validation_options[0]
    record = aws.route53.Record(f"{name}-cert-validation", zone_id=args.hosted_zone_id,
                                name=option.resource_record_name,
                                type=option.resource_record_type,
                                records=[option.resource_record_value], ttl=300,
                                allow_overwrite=True, opts=child)
    return aws.acm.CertificateValidation(f"{name}-cert", certificate_arn=cert.arn,
                                         validation_record_fqdns=[record.fqdn],
                                         opts=child).certificate_arn
