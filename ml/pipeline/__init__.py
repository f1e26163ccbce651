"""One run's steps and decisions: the steps the flow calls, the gate, the run log and the run lock."""
