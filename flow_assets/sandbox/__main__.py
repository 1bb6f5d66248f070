"""Run the Salesforce sandbox in the foreground: python -m flow_assets.sandbox --port 8765."""

import sys

from flow_assets.sandbox.salesforce import serve_forever_cli

sys.exit(serve_forever_cli())
