"""The running process: the service's lifecycle and fold loop, the supervisor of replica
workers, and the metrics every stage exports."""
