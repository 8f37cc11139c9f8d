"""The bad-input table: each wrong setting, option, path or input is refused before any AWS write.

test_bad_inputs.py runs the `drover` CLI in a child process against the moto server through a
request-counting proxy (a real function exists), and the Action's entrypoint through the
simulated container run of tests/test_action_container.py. The table with the expected
message of each case is docs/bad-inputs.md.
"""
