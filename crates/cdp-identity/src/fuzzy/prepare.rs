//! What a quasi-identifying value becomes before it is encoded: a normalised text, its
//! q-grams, and phonetic codes for blocking. Clear text exists only here, in memory, on its
//! way to a keyed encoding (`cdp_crypto::FuzzyKey`); nothing this module returns is stored.

use unicode_normalization::UnicodeNormalization;

/// The q-gram length of text encodings: bigrams, as clkhash and the Bloom-filter linkage
/// literature use for names and addresses.
pub const Q: usize = 2;

/// Lowercase, compatibility-normalised (full-width digits and letters fold), letters and
/// digits only, runs of anything else as one space, trimmed. `"  O'Brien-Smith "` ->
/// `"o brien smith"`. Chinese characters become their toneless pinyin, a word each: `"張三"`,
/// `"张三"` and `"Zhang San"` are all `"zhang san"`, so simplified and traditional writing and
/// a name typed in Latin letters at a till compare equal (homophones do too: the other fields
/// tell them apart).
pub fn normalise_text(raw: &str) -> String {
    use pinyin::ToPinyin;
    let mut out = String::with_capacity(raw.len());
    let mut space = false;
    for c in raw.nfkc().flat_map(char::to_lowercase) {
        if let Some(syllable) = c.to_pinyin() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(syllable.plain());
            space = true;
            continue;
        }
        if c.is_alphanumeric() {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.push(c);
        } else {
            space = true;
        }
    }
    out
}

/// The padded q-grams of a normalised text (`_` marks both ends, so that the first and last
/// characters weigh as much as the others): `"ann"` -> `_a`, `an`, `nn`, `n_`. Repeated grams
/// count once (a Bloom filter is a set). Empty text has none.
pub fn qgrams(normalised: &str) -> Vec<String> {
    if normalised.is_empty() {
        return Vec::new();
    }
    let chars: Vec<char> = std::iter::once('_')
        .chain(normalised.chars())
        .chain(std::iter::once('_'))
        .collect();
    let mut grams: Vec<String> = chars.windows(Q).map(|w| w.iter().collect()).collect();
    grams.sort_unstable();
    grams.dedup();
    grams
}

/// American Soundex of the first word's Latin letters (`"robert"` -> `R163`), the blocking
/// code of names: spelling variants that sound alike share it. A word without Latin letters
/// (a Chinese name before its pinyin is taken) is its first character.
pub fn soundex(normalised: &str) -> String {
    let word = normalised.split(' ').next().unwrap_or("");
    let letters: Vec<char> = word
        .chars()
        .filter(char::is_ascii_alphabetic)
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let Some(&first) = letters.first() else {
        return word.chars().next().map(String::from).unwrap_or_default();
    };
    let code = |c: char| match c {
        'B' | 'F' | 'P' | 'V' => '1',
        'C' | 'G' | 'J' | 'K' | 'Q' | 'S' | 'X' | 'Z' => '2',
        'D' | 'T' => '3',
        'L' => '4',
        'M' | 'N' => '5',
        'R' => '6',
        // Vowels and y separate equal codes; h and w do not.
        'H' | 'W' => '-',
        _ => '0',
    };
    let mut out = String::from(first);
    let mut last = code(first);
    for &c in &letters[1..] {
        let digit = code(c);
        match digit {
            '-' => continue,
            '0' => last = '0',
            d if d != last => {
                out.push(d);
                last = d;
                if out.len() == 4 {
                    break;
                }
            }
            _ => {}
        }
    }
    while out.len() < 4 {
        out.push('0');
    }
    out
}

/// A birth date as (year, month, day), from `YYYY-MM-DD`, `YYYYMMDD` or `YYYY/MM/DD`; `None`
/// for anything else or an impossible date part (month 13).
pub fn date_parts(raw: &str) -> Option<(u16, u8, u8)> {
    let digits: String = raw.trim().chars().filter(char::is_ascii_digit).collect();
    let shape_ok = raw
        .trim()
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '-' | '/' | '.'));
    if digits.len() != 8 || !shape_ok {
        return None;
    }
    let year: u16 = digits[..4].parse().ok()?;
    let month: u8 = digits[4..6].parse().ok()?;
    let day: u8 = digits[6..].parse().ok()?;
    // A transposed day and month is a typo worth keeping, so the month is checked only
    // against the larger bound of the two.
    ((1..=31).contains(&month) && (1..=31).contains(&day) && year > 0).then_some((year, month, day))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_lowercased_folded_and_stripped() {
        assert_eq!(normalise_text("  O'Brien-Smith "), "o brien smith");
        assert_eq!(normalise_text("ＡＢＣ１２３"), "abc123");
        assert_eq!(normalise_text("张三"), "zhang san");
        assert_eq!(normalise_text("張三"), "zhang san");
        assert_eq!(normalise_text("Zhang San"), "zhang san");
        assert_eq!(
            normalise_text("上海市中山路88号"),
            "shang hai shi zhong shan lu 88 hao"
        );
        assert_eq!(normalise_text("--"), "");
    }

    #[test]
    fn qgrams_are_padded_and_a_set() {
        assert_eq!(qgrams("ann"), ["_a", "an", "n_", "nn"]);
        assert_eq!(qgrams("aaa"), ["_a", "a_", "aa"]);
        assert_eq!(qgrams("张三"), ["_张", "三_", "张三"]);
        assert!(qgrams("").is_empty());
    }

    #[test]
    fn soundex_matches_the_reference_codes() {
        for (name, code) in [
            ("robert", "R163"),
            ("rupert", "R163"),
            ("rubin", "R150"),
            ("ashcraft", "A261"),
            ("tymczak", "T522"),
            ("pfister", "P236"),
            ("honeyman", "H555"),
            ("lee", "L000"),
        ] {
            assert_eq!(soundex(name), code, "{name}");
        }
        assert_eq!(soundex("张三"), "张");
        assert_eq!(soundex(""), "");
    }

    #[test]
    fn dates_in_the_usual_shapes() {
        assert_eq!(date_parts("1965-10-13"), Some((1965, 10, 13)));
        assert_eq!(date_parts("19651013"), Some((1965, 10, 13)));
        assert_eq!(date_parts("1965/13/10"), Some((1965, 13, 10)));
        assert_eq!(date_parts("1965-40-01"), None);
        assert_eq!(date_parts("yesterday"), None);
        assert_eq!(date_parts("196510"), None);
    }
}
