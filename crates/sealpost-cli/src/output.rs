//! Formatting: times, message lines, identity fingerprints, safety numbers and QR codes.

use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;
use sealpost_client::{DeviceAddress, DeviceInfo, IdentityKey, MessageBody, SafetyNumber};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

/// `HH:MM:SS`, as [`clock`] prints a time.
const CLOCK: &[BorrowedFormatItem<'static>] = format_description!("[hour]:[minute]:[second]");
/// `YYYY-MM-DD HH:MM:SS UTC`, as [`date_time`] prints a time.
const DATE_TIME: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");

/// `YYYY-MM-DD`, as [`date`] prints a day.
const DATE: &[BorrowedFormatItem<'static>] = format_description!("[year]-[month]-[day]");

/// Writes to stdout (with a newline if `newline`). When stdout is closed early, e.g. by
/// `sealpost receive | head -1`, the program ends quietly instead of failing.
pub fn emit(args: std::fmt::Arguments<'_>, newline: bool) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| {
            if newline {
                out.write_all(b"\n")
            } else {
                Ok(())
            }
        })
        .and_then(|()| out.flush());
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// `println!` that survives a closed stdout (see [`emit`]).
macro_rules! outln {
    () => {
        $crate::output::emit(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::output::emit(format_args!($($arg)*), true)
    };
}

/// `print!` that survives a closed stdout (see [`emit`]).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::emit(format_args!($($arg)*), false)
    };
}

pub(crate) use {out, outln};

/// Now, Unix milliseconds.
pub fn now_ms() -> u64 {
    u64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// A Unix-ms time (from the network: any `u64`) formatted in UTC with `format`; a time past
/// the year 9999 is shown as its number of milliseconds.
fn utc(ms: u64, format: &[BorrowedFormatItem<'_>]) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_else(|| format!("{ms} ms after 1970"))
}

/// `HH:MM:SS` (UTC) of a Unix-ms time.
pub fn clock(ms: u64) -> String {
    utc(ms, CLOCK)
}

/// `YYYY-MM-DD HH:MM:SS UTC` of a Unix-ms time.
pub fn date_time(ms: u64) -> String {
    utc(ms, DATE_TIME)
}

/// `YYYY-MM-DD` (UTC) of a time.
pub fn date(t: std::time::SystemTime) -> String {
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    utc(ms, DATE)
}

/// Text from the network made safe for a terminal: control characters (escape sequences
/// could rewrite the screen) are shown escaped; newlines continue indented.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\n    "),
            '\t' => out.push('\t'),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

/// A body as shown: the text, or a size for binary content.
pub fn body_text(body: &MessageBody) -> String {
    match body {
        MessageBody::Text(t) => sanitize(t),
        MessageBody::Bytes(b) => format!("<{} bytes of binary content>", b.len()),
    }
}

/// `+15551234567` for device 1, `+15551234567 (device 2)` otherwise.
pub fn sender(from: &DeviceAddress) -> String {
    if from.device.0 == 1 {
        from.account.as_str().to_owned()
    } else {
        format!("{} (device {})", from.account.as_str(), from.device.0)
    }
}

/// A message's sender: with its author as the sender's signed device list names it,
/// `+15551234567 — Lina, support (agent)`; without a list, as [`sender`].
pub fn author(from: &DeviceAddress, author: Option<&DeviceInfo>) -> String {
    match author {
        Some(a) => format!(
            "{} — {} ({})",
            from.account.as_str(),
            a.name,
            crate::commands::role_word(a.role)
        ),
        None => sender(from),
    }
}

/// One received message as `receive` prints it.
pub fn message_line(
    from: &DeviceAddress,
    by: Option<&DeviceInfo>,
    timestamp: u64,
    body: &MessageBody,
) -> String {
    format!(
        "[{}] {}: {}",
        date_time(timestamp),
        author(from, by),
        body_text(body)
    )
}

/// A short, comparable identity fingerprint: the first 128 bits of SHA-256 over the
/// identity's encoding, in groups of four hex digits.
pub fn identity_fingerprint(identity: &IdentityKey) -> String {
    let digest = Sha256::digest(identity.to_bytes());
    let hex = hex::encode(digest.get(..16).unwrap_or_default());
    let mut out = String::new();
    for (i, c) in hex.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// The 60 digits as three rows of four groups of five.
pub fn safety_number_rows(number: &SafetyNumber) -> Vec<String> {
    number
        .display_groups()
        .chunks(4)
        .map(|row| row.join(" "))
        .collect()
}

/// A QR code of `payload` drawn with Unicode half blocks, two modules per character row
/// (`qrcode`'s [`Dense1x2`] renderer), with the standard quiet zone of four modules.
///
/// By default light modules are drawn (as the foreground), which suits the usual light text
/// on a dark terminal; `invert` draws dark modules instead, for light backgrounds.
pub fn qr_code(payload: &[u8], invert: bool) -> anyhow::Result<String> {
    let code = QrCode::new(payload).map_err(|e| anyhow::anyhow!("cannot draw a QR code: {e}"))?;
    let (dark, light) = if invert {
        (Dense1x2::Dark, Dense1x2::Light)
    } else {
        (Dense1x2::Light, Dense1x2::Dark)
    };
    let mut out = code
        .render::<Dense1x2>()
        .dark_color(dark)
        .light_color(light)
        .build();
    out.push('\n');
    Ok(out)
}

/// A duration in words: "6 days 23 hours", "5 minutes".
pub fn duration_words(d: std::time::Duration) -> String {
    let d = time::Duration::try_from(d).unwrap_or(time::Duration::MAX);
    let (days, hours, minutes) = (d.whole_days(), d.whole_hours() % 24, d.whole_minutes() % 60);
    let unit = |n: i64, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    match (days, hours) {
        (0, 0) => unit(minutes.max(1), "minute"),
        (0, h) => format!("{} {}", unit(h, "hour"), unit(minutes, "minute")),
        (d, h) => format!("{} {}", unit(d, "day"), unit(h, "hour")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_in_words() {
        use std::time::Duration;
        assert_eq!(
            super::duration_words(Duration::from_secs(604_800)),
            "7 days 0 hours"
        );
        assert_eq!(
            super::duration_words(Duration::from_secs(3_660)),
            "1 hour 1 minute"
        );
        assert_eq!(super::duration_words(Duration::from_secs(5)), "1 minute");
    }

    use super::*;

    #[test]
    fn times() {
        assert_eq!(date_time(0), "1970-01-01 00:00:00 UTC");
        // 2024-02-29 23:59:59 UTC, a leap day.
        assert_eq!(date_time(1_709_251_199_000), "2024-02-29 23:59:59 UTC");
        assert_eq!(date_time(1_767_225_600_500), "2026-01-01 00:00:00 UTC");
        assert_eq!(clock(3_723_000), "01:02:03");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(sanitize("hi\u{1b}[2Jthere"), "hi\\u{1b}[2Jthere");
        assert_eq!(sanitize("a\nb"), "a\n    b");
        assert_eq!(
            body_text(&MessageBody::Bytes(vec![1, 2, 3])),
            "<3 bytes of binary content>"
        );
    }

    #[test]
    fn times_past_the_calendar_are_shown_as_numbers() {
        assert_eq!(date_time(u64::MAX), format!("{} ms after 1970", u64::MAX));
        assert_eq!(clock(u64::MAX), format!("{} ms after 1970", u64::MAX));
        assert_eq!(
            super::duration_words(std::time::Duration::MAX),
            format!("{} days {} hours", i64::MAX / 86_400, i64::MAX / 3_600 % 24)
        );
    }

    #[test]
    fn qr_has_the_right_shape() {
        let qr = qr_code(&[7u8; 65], false).unwrap_or_default();
        let lines: Vec<&str> = qr.lines().collect();
        let code = QrCode::new([7u8; 65]).map(|c| c.width()).unwrap_or(0);
        let size = code + 2 * 4;
        assert!(code >= 21);
        assert_eq!(lines.len(), size.div_ceil(2));
        assert!(lines.iter().all(|l| l.chars().count() == size));
        assert!(qr.ends_with('\n'));
        // Quiet zone on a dark terminal: drawn as full blocks.
        assert!(lines.first().is_some_and(|l| l.chars().all(|c| c == '█')));
        let inverted = qr_code(&[7u8; 65], true).unwrap_or_default();
        assert!(inverted.lines().next().is_some_and(|l| l.trim().is_empty()));
        // The two drawings are each other's negative, half block by half block.
        let negative = |c: char| match c {
            '█' => ' ',
            ' ' => '█',
            '▀' => '▄',
            '▄' => '▀',
            other => other,
        };
        let flipped: String = inverted.chars().map(negative).collect();
        // Past the last row (an odd number of rows) both leave the lower half empty.
        let (a, b) = (
            qr.lines().take(lines.len() - 1).collect::<Vec<_>>(),
            flipped.lines().take(lines.len() - 1).collect::<Vec<_>>(),
        );
        assert_eq!(a, b);
    }
}
