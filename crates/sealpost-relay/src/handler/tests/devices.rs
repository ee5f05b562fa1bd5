//! Device activity (spec/relay.md 3.12).

use super::*;

/// `DeviceActivity` (spec/relay.md 3.12): refused before authentication like every
/// authenticated-only request; lists only the caller's own account; each time is the device's
/// newest `Authenticate` or close of an authenticated connection, rounded down to its UTC day,
/// and never moves back.
#[test]
fn device_activity_is_own_account_only_rounded_and_monotonic() {
    use sealpost_wire::relay::{DAY_SECS, DeviceLastSeen};
    let e = env();
    let mut c = e.h.new_connection(9, T0);
    assert_eq!(
        err(&e.req(&mut c, X1, Request::DeviceActivity, T0)),
        ErrorCode::Unauthenticated
    );
    // T0 is 1_699_920_000 s (its day) + 80_000 s.
    let day0 = 1_699_920_000;
    assert_eq!(day0 % DAY_SECS, 0);
    assert_eq!(T0 / 1000 - day0, 80_000);
    let activity = |d: &mut Dev, now| e.req(&mut d.conn, d.exporter, Request::DeviceActivity, now);
    let one = |id, day| {
        Response::Activity(vec![DeviceLastSeen {
            device_id: id,
            last_seen_day: day,
        }])
    };

    let mut alice = e.device(ALICE, 1, T0);
    let mut bob = e.device("+15550002222", 2, T0 + 2 * DAY_MS);
    // Registration and authentication at T0: the day of T0, not T0 itself.
    assert_eq!(activity(&mut alice, T0), one(1, day0));
    assert_eq!(activity(&mut bob, T0), one(1, day0 + 2 * DAY_SECS));

    // The close of an authenticated connection counts; the request itself does not.
    let later = T0 + 6_399_999 + DAY_MS; // the last millisecond of the next day
    assert_eq!(activity(&mut alice, later), one(1, day0));
    ready(e.h.connection_closed(&alice.conn, later)).unwrap();
    let mut again = Dev {
        conn: e.h.new_connection(3, later),
        ..alice
    };
    assert_eq!(
        err(&activity(&mut again, later)),
        ErrorCode::Unauthenticated
    );
    assert!(matches!(
        e.authenticate(&mut again, T0),
        Response::Authenticated { .. }
    ));
    // An authentication with an older clock does not move last seen back.
    assert_eq!(activity(&mut again, T0), one(1, day0 + DAY_SECS));
    // The next millisecond is the next day.
    ready(e.h.connection_closed(&again.conn, later + 1)).unwrap();
    assert_eq!(
        ready(e.store.device_activity(&acct(ALICE))).unwrap()[0].last_seen,
        later + 1
    );
    let mut third = Dev {
        conn: e.h.new_connection(4, later + 1),
        ..again
    };
    assert!(matches!(
        e.authenticate(&mut third, later + 1),
        Response::Authenticated { .. }
    ));
    assert_eq!(activity(&mut third, later + 1), one(1, day0 + 2 * DAY_SECS));
    // Bob's answer is still only Bob's device, unchanged by Alice's activity.
    assert_eq!(activity(&mut bob, later + 1), one(1, day0 + 2 * DAY_SECS));
    // A closed connection that never authenticated counts for nobody.
    ready(e.h.connection_closed(&c, later + 10 * DAY_MS)).unwrap();
    assert_eq!(activity(&mut third, later + 1), one(1, day0 + 2 * DAY_SECS));
}
