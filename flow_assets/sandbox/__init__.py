"""Local stand-ins for SaaS APIs (a Salesforce-compatible REST server) for demos, tests and benchmarks."""

from flow_assets.sandbox.salesforce import SalesforceSandbox

__all__ = ["SalesforceSandbox"]
