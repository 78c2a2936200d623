//! Applying display transforms to values (masking, generalisation).
//!
//! Pseudonyms need a key and are made by the engine; here they drop the value.

use serde_json::Value;

use crate::model::{Generalisation, MaskStyle, Transform};

/// The value to show, or `None` when the field must be left out.
pub fn apply(transform: Transform, value: &Value) -> Option<Value> {
    match transform {
        Transform::Keep => Some(value.clone()),
        Transform::Drop | Transform::Pseudonymise => None,
        Transform::Mask(style) => Some(map_strings(value, &|text| mask(style, text))),
        Transform::Generalise(to) => generalise(to, value),
    }
}

fn map_strings(value: &Value, f: &dyn Fn(&str) -> String) -> Value {
    match value {
        Value::String(text) => Value::String(f(text)),
        Value::Number(number) => Value::String(f(&number.to_string())),
        Value::Array(items) => Value::Array(items.iter().map(|v| map_strings(v, f)).collect()),
        Value::Object(members) => Value::Object(
            members
                .iter()
                .map(|(k, v)| (k.clone(), map_strings(v, f)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Masks one text value.
pub fn mask(style: MaskStyle, text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let stars = |n: usize| "*".repeat(n);
    match style {
        // GB/T 35273 7.2's example: 138****1234. The four characters before the last four
        // are hidden; for an E.164 number the country code stays visible (+86138****1234).
        MaskStyle::Phone => {
            // Separators would shift the window ("138 0013 8000"): mask the digits alone.
            let chars: Vec<char> = chars
                .iter()
                .copied()
                .filter(|c| c.is_ascii_digit() || *c == '+')
                .collect();
            if chars.len() < 8 {
                return stars(chars.len());
            }
            let keep_head = (chars.len() - 8).max(1);
            let head: String = chars[..keep_head].iter().collect();
            let tail: String = chars[chars.len() - 4..].iter().collect();
            format!("{head}{}{tail}", stars(chars.len() - keep_head - 4))
        }
        MaskStyle::Email => match text.split_once('@') {
            Some((local, domain)) => {
                let first: String = local.chars().take(1).collect();
                format!("{first}****@{domain}")
            }
            None => stars(chars.len().max(1)),
        },
        MaskStyle::Name => {
            let first: String = chars.iter().take(1).collect();
            format!("{first}{}", stars(chars.len().saturating_sub(1).max(1)))
        }
        MaskStyle::Tail => {
            if chars.len() <= 4 {
                return stars(chars.len());
            }
            let tail: String = chars[chars.len() - 4..].iter().collect();
            format!("{}{tail}", stars(chars.len() - 4))
        }
    }
}

/// The ten-year band of an age, `30-39`: the one formula of the `generalise:band10` transform,
/// the index's `age_band` and the exports' `age_band` field.
pub fn decade_band(age: u32) -> String {
    let low = age / 10 * 10;
    format!("{low}-{}", low + 9)
}

fn generalise(to: Generalisation, value: &Value) -> Option<Value> {
    match to {
        Generalisation::Year => {
            let text = value.as_str()?;
            let year: String = text.chars().take(4).collect();
            (year.len() == 4 && year.chars().all(|c| c.is_ascii_digit()))
                .then_some(Value::String(year))
        }
        Generalisation::Band10 => {
            let years = match value {
                Value::Number(n) => n.as_f64()?,
                Value::String(s) => s.trim().parse::<f64>().ok()?,
                _ => return None,
            };
            if !(0.0..200.0).contains(&years) {
                return None;
            }
            // Truncation to the decade is the point of the band.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Some(Value::String(decade_band(years as u32)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_as_gbt_35273_shows() {
        assert_eq!(mask(MaskStyle::Phone, "13812341234"), "138****1234");
        assert_eq!(mask(MaskStyle::Phone, "+8613812341234"), "+86138****1234");
        assert_eq!(mask(MaskStyle::Phone, "138 1234-1234"), "138****1234");
        assert_eq!(
            mask(MaskStyle::Email, "zhang.san@example.cn"),
            "z****@example.cn"
        );
        assert_eq!(mask(MaskStyle::Name, "张三"), "张*");
        assert_eq!(mask(MaskStyle::Tail, "oABC123456"), "******3456");
        assert_eq!(mask(MaskStyle::Phone, "123"), "***");
    }

    #[test]
    fn generalises() {
        let birthday = Value::String("1990-05-01".into());
        assert_eq!(
            apply(Transform::Generalise(Generalisation::Year), &birthday),
            Some(Value::String("1990".into()))
        );
        assert_eq!(
            apply(
                Transform::Generalise(Generalisation::Band10),
                &serde_json::json!(34)
            ),
            Some(Value::String("30-39".into()))
        );
        assert_eq!(apply(Transform::Drop, &birthday), None);
    }
}
