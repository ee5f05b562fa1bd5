//! The servers some tests need besides the relay (PostgreSQL, NATS), named by environment
//! variables: `.ci/postgres.sh start` and `.ci/nats.sh start` print them, `.ci/run` sets them
//! together with `SEALPOST_REQUIRE_POSTGRES=1` / `SEALPOST_REQUIRE_NATS=1`.

use super::say;

/// The value of `var` (a server's URL). When it is not set: a failure if `require_var` is
/// `1`, otherwise `None` after a loud banner on stderr saying that `what` is skipped and
/// how to start a server (`.ci/<script> start`).
pub fn require(var: &str, require_var: &str, what: &str, script: &str) -> Option<String> {
    let required = std::env::var(require_var).is_ok_and(|v| v == "1");
    let Ok(url) = std::env::var(var) else {
        assert!(!required, "{require_var}=1 but {var} is not set");
        say(&format!(
            "\n{bar}\n {what} SKIPPED: {var} is not set.\n \
             Start a server with `eval \"$(.ci/{script} start)\"` (README, \"PostgreSQL: several relay nodes\").\n{bar}\n",
            bar = "!".repeat(78)
        ));
        return None;
    };
    Some(url)
}

/// `SEALPOST_TEST_POSTGRES` (see [`require`]).
pub fn postgres(what: &str) -> Option<String> {
    require(
        "SEALPOST_TEST_POSTGRES",
        "SEALPOST_REQUIRE_POSTGRES",
        what,
        "postgres.sh",
    )
}

/// `SEALPOST_TEST_NATS` (see [`require`]).
pub fn nats(what: &str) -> Option<String> {
    require(
        "SEALPOST_TEST_NATS",
        "SEALPOST_REQUIRE_NATS",
        what,
        "nats.sh",
    )
}

/// Both servers, or `None` (each missing one is announced, see [`require`]).
pub fn postgres_and_nats(what: &str) -> Option<(String, String)> {
    let pg = postgres(what);
    let nats = nats(what);
    Some((pg?, nats?))
}
