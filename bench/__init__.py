"""`make bench`: the same Salesforce records through Flowbridge and two dlt pipelines."""
