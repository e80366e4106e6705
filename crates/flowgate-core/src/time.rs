//! UTC calendar fields from epoch time, without a date-time dependency.

/// A civil UTC date and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millis: u32,
}

impl UtcTime {
    /// Howard Hinnant's `civil_from_days`.
    pub fn from_epoch_ms(ms: u64) -> Self {
        let secs = (ms / 1000) as i64;
        let millis = (ms % 1000) as u32;
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400) as u32;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        UtcTime {
            year,
            month,
            day,
            hour: sod / 3600,
            minute: sod / 60 % 60,
            second: sod % 60,
            millis,
        }
    }

    /// Seconds since the Unix epoch (Howard Hinnant's `days_from_civil`).
    pub fn epoch_secs(&self) -> i64 {
        let y = self.year - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }

    /// Parses an RFC 3339 timestamp (`2024-03-04T10:30:00Z`, `...+01:00`, fractions
    /// ignored) into seconds since the epoch.
    pub fn parse_rfc3339(s: &str) -> Option<i64> {
        let b = s.as_bytes();
        let num = |r: std::ops::Range<usize>| -> Option<u32> {
            let t = s.get(r)?;
            t.bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| t.parse().ok())?
        };
        if b.len() < 20
            || b[4] != b'-'
            || b[7] != b'-'
            || !matches!(b[10], b'T' | b't' | b' ')
            || b[13] != b':'
            || b[16] != b':'
        {
            return None;
        }
        let t = UtcTime {
            year: i64::from(num(0..4)?),
            month: num(5..7)?,
            day: num(8..10)?,
            hour: num(11..13)?,
            minute: num(14..16)?,
            second: num(17..19)?,
            millis: 0,
        };
        let days_in_month = match t.month {
            2 if t.year % 4 == 0 && (t.year % 100 != 0 || t.year % 400 == 0) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            1..=12 => 31,
            _ => return None,
        };
        if t.day == 0 || t.day > days_in_month || t.hour > 23 || t.minute > 59 || t.second > 60 {
            return None;
        }
        let mut rest = &s[19..];
        if let Some(frac) = rest.strip_prefix('.') {
            let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return None;
            }
            rest = &frac[digits..];
        }
        let offset = match rest {
            "Z" | "z" => 0,
            _ if rest.len() == 6
                && rest.is_ascii()
                && matches!(rest.as_bytes()[0], b'+' | b'-')
                && rest.as_bytes()[3] == b':' =>
            {
                let hours = i64::from(rest[1..3].parse::<u32>().ok()?);
                let minutes = i64::from(rest[4..6].parse::<u32>().ok()?);
                let sign = if rest.starts_with('-') { -1 } else { 1 };
                sign * (hours * 3600 + minutes * 60)
            }
            _ => return None,
        };
        Some(t.epoch_secs() - offset)
    }

    /// Network Watcher's hour partition of a blob path: `y=2024/m=03/d=04/h=10/`.
    pub fn hour_partition(&self) -> String {
        format!(
            "y={}/m={:02}/d={:02}/h={:02}/",
            self.year, self.month, self.day, self.hour
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar() {
        let t = UtcTime::from_epoch_ms(951_782_400_000);
        assert_eq!((t.year, t.month, t.day), (2000, 2, 29));
        assert_eq!(
            UtcTime::from_epoch_ms(1_709_546_520_000).hour_partition(),
            "y=2024/m=03/d=04/h=10/"
        );
        for ms in [0, 951_782_400_000, 1_709_546_520_000, 4_102_444_799_000] {
            assert_eq!(UtcTime::from_epoch_ms(ms).epoch_secs(), (ms / 1000) as i64);
        }
    }

    #[test]
    fn rfc3339() {
        let p = UtcTime::parse_rfc3339;
        assert_eq!(p("2024-03-04T10:02:00Z"), Some(1_709_546_520));
        assert_eq!(p("2024-03-04T10:02:00.123Z"), Some(1_709_546_520));
        assert_eq!(p("2024-03-04T11:02:00+01:00"), Some(1_709_546_520));
        assert_eq!(p("2024-03-04T05:02:00-05:00"), Some(1_709_546_520));
        for bad in [
            "2024-03-04",
            "2024-02-30T00:00:00Z",
            "2024-03-04T10:02:00",
            "2024-13-01T00:00:00Z",
            "x024-03-04T10:02:00Z",
            "2024-03-04T10:02:00+1:00",
        ] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }
}
