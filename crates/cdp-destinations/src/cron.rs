//! When a recurring export runs: the five fields of cron (minute, hour, day of month, month,
//! day of week) and its `@daily`-style shorthands, read in a fixed UTC offset (`+08:00` for
//! China, which keeps no daylight saving time; a zone that does needs its offset changed
//! twice a year, said in docs/exports.md).
//!
//! As in cron, when both the day of month and the day of week are restricted a day matching
//! either runs. An expression no date satisfies (`0 0 30 2 *`) is refused when it is read.

use std::fmt;

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// An expression that cannot be read, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schedule {expression:?}: {problem}")]
pub struct CronError {
    pub expression: String,
    pub problem: String,
}

/// A parsed schedule.
#[derive(Clone, PartialEq, Eq)]
pub struct CronSchedule {
    text: String,
    offset: UtcOffset,
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    days_restricted: bool,
    weekdays_restricted: bool,
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronSchedule({:?} at {})", self.text, self.offset)
    }
}

const MONTH_NAMES: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// How far ahead the next run is looked for (an expression matching only 29 February is
/// satisfied within eight years).
const HORIZON_DAYS: i64 = 366 * 8 + 2;

impl CronSchedule {
    /// Reads `expression` (five fields or a shorthand) at `offset` (`Z`, `+08:00`, `-05:00`).
    pub fn parse(expression: &str, offset: &str) -> Result<Self, CronError> {
        let error = |problem: String| CronError {
            expression: expression.to_string(),
            problem,
        };
        let offset = parse_offset(offset).map_err(&error)?;
        let text = expression.trim();
        let expanded = match text {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other if other.starts_with('@') => {
                return Err(error(format!(
                    "unknown shorthand {other}: use @hourly, @daily, @weekly, @monthly or @yearly"
                )));
            }
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(error(format!(
                "{} fields: a schedule has five (minute hour day-of-month month day-of-week), e.g. \"0 3 * * *\"",
                fields.len()
            )));
        }
        let minutes =
            parse_field(fields[0], 0, 59, &[]).map_err(|p| error(format!("minute: {p}")))?;
        let hours = parse_field(fields[1], 0, 23, &[]).map_err(|p| error(format!("hour: {p}")))?;
        let days =
            parse_field(fields[2], 1, 31, &[]).map_err(|p| error(format!("day of month: {p}")))?;
        let months = parse_field(fields[3], 1, 12, &MONTH_NAMES)
            .map_err(|p| error(format!("month: {p}")))?;
        // 7 is Sunday too.
        let mut weekdays = parse_field(fields[4], 0, 7, &DAY_NAMES)
            .map_err(|p| error(format!("day of week: {p}")))?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        let schedule = Self {
            text: text.to_string(),
            offset,
            minutes,
            hours: hours as u32,
            days: days as u32,
            months: months as u16,
            weekdays: (weekdays & 0x7f) as u8,
            days_restricted: fields[2] != "*",
            weekdays_restricted: fields[4] != "*",
        };
        if schedule
            .next_after(OffsetDateTime::UNIX_EPOCH + time::Duration::days(365 * 30))
            .is_none()
        {
            return Err(error("no date matches it".into()));
        }
        Ok(schedule)
    }

    /// The expression as given.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The offset it is read at, as `+08:00`.
    pub fn offset_text(&self) -> String {
        let (h, m, _) = self.offset.as_hms();
        let sign = if self.offset.is_negative() { '-' } else { '+' };
        format!("{sign}{:02}:{:02}", h.unsigned_abs(), m.unsigned_abs())
    }

    /// The first time strictly after `after` that the schedule matches (to the minute).
    pub fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        let local = after.to_offset(self.offset);
        let start =
            local.replace_second(0).ok()?.replace_nanosecond(0).ok()? + time::Duration::minutes(1);
        let mut date = start.date();
        let mut first_day = true;
        let last = date + time::Duration::days(HORIZON_DAYS);
        while date <= last {
            if self.month_matches(date.month()) && self.day_matches(date) {
                let from = if first_day {
                    start.time()
                } else {
                    Time::MIDNIGHT
                };
                if let Some(time) = self.first_time_from(from) {
                    return Some(
                        PrimitiveDateTime::new(date, time)
                            .assume_offset(self.offset)
                            .to_offset(UtcOffset::UTC),
                    );
                }
            }
            date = date.next_day()?;
            first_day = false;
        }
        None
    }

    fn month_matches(&self, month: Month) -> bool {
        self.months & (1 << u8::from(month)) != 0
    }

    fn day_matches(&self, date: Date) -> bool {
        let day = self.days & (1 << date.day()) != 0;
        let weekday = self.weekdays & (1 << date.weekday().number_days_from_sunday()) != 0;
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => day || weekday,
            (true, false) => day,
            (false, true) => weekday,
            (false, false) => true,
        }
    }

    /// The first matching hour and minute at or after `from` on a matching day.
    fn first_time_from(&self, from: Time) -> Option<Time> {
        for hour in from.hour()..24 {
            if self.hours & (1 << hour) == 0 {
                continue;
            }
            let first_minute = if hour == from.hour() {
                from.minute()
            } else {
                0
            };
            for minute in first_minute..60 {
                if self.minutes & (1 << minute) != 0 {
                    return Time::from_hms(hour, minute, 0).ok();
                }
            }
        }
        None
    }
}

/// `Z`, `UTC`, `+08:00`, `-0500`, `+8`.
fn parse_offset(text: &str) -> Result<UtcOffset, String> {
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("z") || text.eq_ignore_ascii_case("utc") {
        return Ok(UtcOffset::UTC);
    }
    let bad = || format!("offset {text:?} is not like +08:00, -05:00 or Z");
    let (sign, rest) = match text.as_bytes()[0] {
        b'+' => (1i8, &text[1..]),
        b'-' => (-1i8, &text[1..]),
        _ => return Err(bad()),
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || digits.len() > 4 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let (hours, minutes) = if digits.len() <= 2 {
        (digits.parse::<i8>().map_err(|_| bad())?, 0)
    } else {
        let split = digits.len() - 2;
        (
            digits[..split].parse::<i8>().map_err(|_| bad())?,
            digits[split..].parse::<i8>().map_err(|_| bad())?,
        )
    };
    if hours > 14 || minutes > 59 {
        return Err(bad());
    }
    UtcOffset::from_hms(sign * hours, sign * minutes, 0).map_err(|_| bad())
}

/// A field as a bit set of the values it allows: `*`, `5`, `1-5`, `*/15`, `10-50/10`,
/// lists of these, and names (`mon`, `jan`) where `names` gives them.
fn parse_field(field: &str, min: u32, max: u32, names: &[&str]) -> Result<u64, String> {
    let value = |text: &str| -> Result<u32, String> {
        let lower = text.to_ascii_lowercase();
        if let Some(at) = names.iter().position(|name| *name == lower) {
            // Month names count from 1, day names from 0.
            return Ok(at as u32 + u32::from(min == 1));
        }
        let n: u32 = text
            .parse()
            .map_err(|_| format!("{text:?} is not a number"))?;
        if n < min || n > max {
            return Err(format!("{n} is outside {min}-{max}"));
        }
        Ok(n)
    };
    let mut bits = 0u64;
    for item in field.split(',') {
        if item.is_empty() {
            return Err("an empty item in a list".into());
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .map_err(|_| format!("step {step:?} is not a number"))?;
                if step == 0 {
                    return Err("a step of 0".into());
                }
                (range, step)
            }
            None => (item, 1),
        };
        let (low, high) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(a)?, value(b)?);
            if a > b {
                return Err(format!("range {a}-{b} runs backwards"));
            }
            (a, b)
        } else {
            let a = value(range)?;
            // `5/15` means from 5 to the end in steps of 15, as in Vixie cron.
            (a, if step > 1 { max } else { a })
        };
        let mut n = low;
        while n <= high {
            bits |= 1 << n;
            n += step;
        }
    }
    Ok(bits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn next(expr: &str, offset: &str, after: OffsetDateTime) -> OffsetDateTime {
        CronSchedule::parse(expr, offset)
            .unwrap_or_else(|e| panic!("{e}"))
            .next_after(after)
            .unwrap_or_else(|| panic!("no next run for {expr}"))
    }

    #[test]
    fn daily_at_three_in_beijing_is_nineteen_utc() {
        let at = next("0 3 * * *", "+08:00", datetime!(2026-12-04 10:00 UTC));
        assert_eq!(at, datetime!(2026-12-04 19:00 UTC));
        // Strictly after: the run time itself gives the next day's.
        assert_eq!(
            next("0 3 * * *", "+08:00", at),
            datetime!(2026-12-05 19:00 UTC)
        );
    }

    #[test]
    fn steps_lists_ranges_and_names() {
        let after = datetime!(2026-12-04 10:07:30 UTC);
        assert_eq!(
            next("*/15 * * * *", "Z", after),
            datetime!(2026-12-04 10:15 UTC)
        );
        assert_eq!(
            next("5,50 * * * *", "Z", after),
            datetime!(2026-12-04 10:50 UTC)
        );
        assert_eq!(
            next("0 9-17/4 * * *", "Z", after),
            datetime!(2026-12-04 13:00 UTC)
        );
        // 2026-12-04 is a Friday: the next Monday is the 7th.
        assert_eq!(
            next("30 8 * * mon", "Z", after),
            datetime!(2026-12-07 08:30 UTC)
        );
        assert_eq!(
            next("0 0 1 jan *", "Z", after),
            datetime!(2027-01-01 00:00 UTC)
        );
        assert_eq!(
            next("@monthly", "Z", after),
            datetime!(2027-01-01 00:00 UTC)
        );
        assert_eq!(
            next("* * * * *", "Z", after),
            datetime!(2026-12-04 10:08 UTC)
        );
        // Sunday as 7.
        assert_eq!(
            next("0 0 * * 7", "Z", after),
            datetime!(2026-12-06 00:00 UTC)
        );
    }

    #[test]
    fn day_of_month_or_day_of_week_as_cron_does() {
        // The 15th or any Monday, whichever comes first.
        let after = datetime!(2026-12-08 00:00 UTC);
        assert_eq!(
            next("0 0 15 * mon", "Z", after),
            datetime!(2026-12-14 00:00 UTC)
        );
        assert_eq!(
            next("0 0 29 2 *", "Z", after),
            datetime!(2028-02-29 00:00 UTC)
        );
    }

    #[test]
    fn bad_expressions_are_refused_naming_the_problem() {
        for (expr, says) in [
            ("0 3 * *", "4 fields"),
            ("61 * * * *", "minute: 61 is outside 0-59"),
            ("0 25 * * *", "hour"),
            ("0 0 30 2 *", "no date matches"),
            ("*/0 * * * *", "step of 0"),
            ("0 0 5-1 * *", "backwards"),
            ("@often", "unknown shorthand"),
            ("0 0 * * funday", "not a number"),
        ] {
            let error = CronSchedule::parse(expr, "Z").expect_err(expr).to_string();
            assert!(error.contains(says), "{expr}: {error}");
        }
        let error = CronSchedule::parse("0 0 * * *", "Beijing").expect_err("offset");
        assert!(error.to_string().contains("+08:00"), "{error}");
    }

    #[test]
    fn offsets_are_read_and_written_back() {
        for (given, written) in [
            ("+08:00", "+08:00"),
            ("-0500", "-05:00"),
            ("Z", "+00:00"),
            ("+5:30", "+05:30"),
        ] {
            let schedule = CronSchedule::parse("@daily", given).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(schedule.offset_text(), written, "{given}");
        }
    }

    proptest::proptest! {
        #[test]
        fn the_next_run_is_later_matches_and_nothing_between_matches(
            minute in 0u32..60, hour in 0u32..24, start in 0i64..(5 * 365 * 24 * 60)
        ) {
            let expr = format!("{minute} {hour} * * *");
            let schedule = CronSchedule::parse(&expr, "+08:00").unwrap_or_else(|e| panic!("{e}"));
            let after = datetime!(2025-01-01 00:00 UTC) + time::Duration::minutes(start);
            let at = schedule.next_after(after).unwrap_or_else(|| panic!("none"));
            proptest::prop_assert!(at > after);
            proptest::prop_assert!(at - after <= time::Duration::days(1));
            let local = at.to_offset(UtcOffset::from_hms(8, 0, 0).unwrap_or(UtcOffset::UTC));
            proptest::prop_assert_eq!((local.hour() as u32, local.minute() as u32), (hour, minute));
        }
    }
}
