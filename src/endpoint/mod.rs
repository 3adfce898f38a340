//! test-endpoint: suites, checks and verdicts (judging replies as the marketplace does).
