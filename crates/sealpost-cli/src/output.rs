//! Formatting: times, message lines, identity fingerprints, safety numbers and QR codes.

use qrcode::{Color, QrCode};
use sealpost_client::{DeviceAddress, IdentityKey, MessageBody, SafetyNumber};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// Modules of light margin around a QR code (the standard asks for 4; 2 scans fine from a
/// screen and saves lines).
const QR_QUIET_ZONE: usize = 2;

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
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `(year, month, day)` of a day count since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Howard Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

fn split_ms(ms: u64) -> (i64, u64) {
    let secs = ms / 1000;
    (i64::try_from(secs / 86_400).unwrap_or(0), secs % 86_400)
}

/// `HH:MM:SS` (UTC) of a Unix-ms time.
pub fn clock(ms: u64) -> String {
    let (_, s) = split_ms(ms);
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// `YYYY-MM-DD HH:MM:SS UTC` of a Unix-ms time.
pub fn date_time(ms: u64) -> String {
    let (days, _) = split_ms(ms);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {} UTC", clock(ms))
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

/// One received message as `receive` prints it.
pub fn message_line(from: &DeviceAddress, timestamp: u64, body: &MessageBody) -> String {
    format!(
        "[{}] {}: {}",
        date_time(timestamp),
        sender(from),
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

/// A QR code of `payload` drawn with Unicode half blocks, two modules per character row.
///
/// By default light modules are drawn (as the foreground), which suits the usual light text
/// on a dark terminal; `invert` draws dark modules instead, for light backgrounds.
pub fn qr_code(payload: &[u8], invert: bool) -> anyhow::Result<String> {
    let code = QrCode::new(payload).map_err(|e| anyhow::anyhow!("cannot draw a QR code: {e}"))?;
    let width = code.width();
    let colors = code.to_colors();
    let size = width + 2 * QR_QUIET_ZONE;
    let inked = |x: usize, y: usize| -> bool {
        let dark = x >= QR_QUIET_ZONE
            && y >= QR_QUIET_ZONE
            && x - QR_QUIET_ZONE < width
            && y - QR_QUIET_ZONE < width
            && colors.get((y - QR_QUIET_ZONE) * width + (x - QR_QUIET_ZONE)) == Some(&Color::Dark);
        dark == invert
    };
    let mut out = String::with_capacity(size * size);
    for y in (0..size).step_by(2) {
        for x in 0..size {
            let top = inked(x, y);
            // Past the last row is quiet zone.
            let bottom = if y + 1 < size {
                inked(x, y + 1)
            } else {
                !invert
            };
            out.push(match (top, bottom) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        let _ = writeln!(out);
    }
    Ok(out)
}

/// A duration in words: "6 days 23 hours", "5 minutes".
pub fn duration_words(d: std::time::Duration) -> String {
    let s = d.as_secs();
    let (days, hours, minutes) = (s / 86_400, (s % 86_400) / 3_600, (s % 3_600) / 60);
    let unit = |n: u64, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
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
    fn qr_has_the_right_shape() {
        let qr = qr_code(&[7u8; 65], false).unwrap_or_default();
        let lines: Vec<&str> = qr.lines().collect();
        let code = QrCode::new([7u8; 65]).map(|c| c.width()).unwrap_or(0);
        let size = code + 2 * QR_QUIET_ZONE;
        assert!(code >= 21);
        assert_eq!(lines.len(), size.div_ceil(2));
        assert!(lines.iter().all(|l| l.chars().count() == size));
        // Quiet zone on a dark terminal: drawn as full blocks.
        assert!(lines.first().is_some_and(|l| l.chars().all(|c| c == '█')));
        let inverted = qr_code(&[7u8; 65], true).unwrap_or_default();
        assert!(inverted.lines().next().is_some_and(|l| l.trim().is_empty()));
    }
}
