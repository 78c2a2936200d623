//! People who reach a retailer through several systems with nothing deterministic in common:
//! a CRM record, a store POS record and an online account per person (each present or not),
//! their names, birth dates, addresses and phones written with the variants real systems hold.
//! The truth (who is whom) comes with them. Used by `cdp bench identity --noisy N` and written
//! as files to import by `cdp demo generate --noisy`.
//!
//! Variants, per record: Chinese names in simplified or traditional characters or typed in
//! pinyin at a till; Latin names with a typo (substitution, deletion, insertion or two
//! letters swapped); addresses with 路 and 街 confused, the city's 市 dropped, `street` as
//! `st`; birth dates missing, with day and month transposed or one digit wrong; phones
//! missing or one digit wrong; postcodes and gender missing.

use std::collections::BTreeMap;

use crate::demo::Rng;

const CN_SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "高", "林", "罗", "郑", "梁", "谢", "宋", "唐", "许", "韩", "冯", "邓", "曹", "彭", "曾",
    "肖", "田", "董", "袁", "潘", "蒋", "蔡", "余", "杜", "叶", "程", "苏", "魏", "吕", "丁", "沈",
    "欧阳", "司马",
];
const CN_GIVEN: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明",
    "超", "秀", "霞", "平", "刚", "桂", "英", "华", "玉", "萍", "红", "建", "文", "辉", "宇", "婷",
    "欣", "浩", "然", "子", "轩", "梓", "涵", "晨", "阳", "佳", "怡", "思", "雨", "博", "嘉", "俊",
];
/// Simplified -> traditional for the characters above that differ.
const TRADITIONAL: &[(char, char)] = &[
    ('张', '張'),
    ('刘', '劉'),
    ('陈', '陳'),
    ('杨', '楊'),
    ('黄', '黃'),
    ('赵', '趙'),
    ('吴', '吳'),
    ('孙', '孫'),
    ('马', '馬'),
    ('郑', '鄭'),
    ('谢', '謝'),
    ('许', '許'),
    ('韩', '韓'),
    ('冯', '馮'),
    ('邓', '鄧'),
    ('蒋', '蔣'),
    ('叶', '葉'),
    ('苏', '蘇'),
    ('吕', '呂'),
    ('欧', '歐'),
    ('伟', '偉'),
    ('丽', '麗'),
    ('强', '強'),
    ('军', '軍'),
    ('杰', '傑'),
    ('涛', '濤'),
    ('华', '華'),
    ('红', '紅'),
    ('辉', '輝'),
    ('阳', '陽'),
    ('东', '東'),
    ('号', '號'),
    ('长', '長'),
    ('设', '設'),
    ('风', '風'),
    ('兴', '興'),
    ('团', '團'),
    ('结', '結'),
    ('胜', '勝'),
    ('广', '廣'),
    ('门', '門'),
];
const CN_CITIES: &[(&str, &str)] = &[
    ("上海市", "200"),
    ("北京市", "100"),
    ("深圳市", "518"),
    ("广州市", "510"),
    ("杭州市", "310"),
    ("成都市", "610"),
    ("南京市", "210"),
    ("武汉市", "430"),
    ("西安市", "710"),
    ("苏州市", "215"),
];
const CN_STREETS: &[&str] = &[
    "中山", "人民", "解放", "建设", "和平", "长江", "南京", "东风", "新华", "文化", "胜利", "青年",
    "光明", "朝阳", "幸福", "团结", "振兴", "黄河", "滨江", "复兴",
];
const EN_FIRST: &[&str] = &[
    "james",
    "mary",
    "john",
    "patricia",
    "robert",
    "jennifer",
    "michael",
    "linda",
    "william",
    "elizabeth",
    "david",
    "barbara",
    "richard",
    "susan",
    "joseph",
    "jessica",
    "thomas",
    "sarah",
    "charles",
    "karen",
    "daniel",
    "nancy",
    "matthew",
    "lisa",
    "anthony",
    "betty",
    "mark",
    "margaret",
    "steven",
    "sandra",
    "paul",
    "ashley",
    "andrew",
    "emily",
    "joshua",
    "donna",
];
const EN_LAST: &[&str] = &[
    "smith",
    "johnson",
    "williams",
    "brown",
    "jones",
    "garcia",
    "miller",
    "davis",
    "rodriguez",
    "martinez",
    "wilson",
    "anderson",
    "taylor",
    "thomas",
    "moore",
    "jackson",
    "martin",
    "lee",
    "thompson",
    "white",
    "harris",
    "clark",
    "lewis",
    "robinson",
    "walker",
    "young",
    "allen",
    "king",
    "wright",
    "scott",
    "green",
    "baker",
    "adams",
    "nelson",
    "hill",
    "campbell",
];
const EN_STREETS: &[&str] = &[
    "high", "station", "church", "park", "victoria", "green", "manor", "kings", "queens", "mill",
    "london", "york", "albert", "grange", "windsor", "cedar", "oak", "elm",
];
const EN_TOWNS: &[&str] = &[
    "london",
    "manchester",
    "leeds",
    "bristol",
    "sheffield",
    "liverpool",
    "oxford",
    "cambridge",
    "york",
    "bath",
    "norwich",
    "exeter",
];

/// One record of a person in one system, with its true person.
pub struct NoisyRecord {
    pub entity: u64,
    /// 0 CRM, 1 POS, 2 online.
    pub source: usize,
    pub values: BTreeMap<String, String>,
}

fn pick<'a>(rng: &mut Rng, list: &[&'a str]) -> &'a str {
    list[rng.below(list.len() as u64) as usize]
}

/// A person as they are, before any system writes them down.
struct Person {
    chinese: bool,
    surname: String,
    given: String,
    birthday: (u32, u32, u32),
    gender: &'static str,
    phone: String,
    street: String,
    city: String,
    postcode: String,
}

fn person(rng: &mut Rng) -> Person {
    let chinese = rng.chance(70);
    let birthday = (
        1950 + rng.below(56) as u32,
        1 + rng.below(12) as u32,
        1 + rng.below(28) as u32,
    );
    let gender = if rng.chance(50) { "f" } else { "m" };
    if chinese {
        let given: String = (0..1 + rng.below(2)).map(|_| pick(rng, CN_GIVEN)).collect();
        let (city, prefix) = CN_CITIES[rng.below(CN_CITIES.len() as u64) as usize];
        let kind = if rng.chance(60) { "路" } else { "街" };
        Person {
            chinese,
            surname: pick(rng, CN_SURNAMES).to_string(),
            given,
            birthday,
            gender,
            phone: format!("1{}{:09}", 3 + rng.below(7), rng.below(1_000_000_000)),
            street: format!("{}{kind}{}号", pick(rng, CN_STREETS), 1 + rng.below(300)),
            city: city.to_string(),
            postcode: format!("{prefix}{:03}", rng.below(1000)),
        }
    } else {
        let kind = if rng.chance(60) { "street" } else { "road" };
        Person {
            chinese,
            surname: pick(rng, EN_LAST).to_string(),
            given: pick(rng, EN_FIRST).to_string(),
            birthday,
            gender,
            phone: format!("+447{:09}", rng.below(1_000_000_000)),
            street: format!("{} {} {kind}", 1 + rng.below(200), pick(rng, EN_STREETS)),
            city: pick(rng, EN_TOWNS).to_string(),
            postcode: format!(
                "{}{} {}{}",
                ["LS", "M", "BS", "OX", "CB", "YO"][rng.below(6) as usize],
                1 + rng.below(20),
                rng.below(10),
                ["AB", "CD", "EF", "GH", "JK"][rng.below(5) as usize]
            ),
        }
    }
}

fn traditional(text: &str) -> String {
    text.chars()
        .map(|c| {
            TRADITIONAL
                .iter()
                .find(|(s, _)| *s == c)
                .map_or(c, |(_, t)| *t)
        })
        .collect()
}

/// A Latin typo: one letter substituted, deleted, inserted, or two swapped.
fn typo(rng: &mut Rng, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    if chars.len() < 3 {
        return text.to_string();
    }
    let at = 1 + rng.below(chars.len() as u64 - 2) as usize;
    let letter = (b'a' + rng.below(26) as u8) as char;
    match rng.below(4) {
        0 => chars[at] = letter,
        1 => {
            chars.remove(at);
        }
        2 => chars.insert(at, letter),
        _ => chars.swap(at, at - 1),
    }
    chars.into_iter().collect()
}

/// One digit of a number changed.
fn digit_typo(rng: &mut Rng, text: &str) -> String {
    let positions: Vec<usize> = text
        .char_indices()
        .filter(|(_, c)| c.is_ascii_digit())
        .map(|(i, _)| i)
        .collect();
    let Some(&at) = positions.get(rng.below(positions.len() as u64) as usize) else {
        return text.to_string();
    };
    let mut bytes = text.as_bytes().to_vec();
    bytes[at] = b'0' + ((bytes[at] - b'0' + 1 + rng.below(9) as u8) % 10);
    String::from_utf8(bytes).unwrap_or_else(|_| text.to_string())
}

/// How one system writes the person down.
fn record(rng: &mut Rng, p: &Person, source: usize) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    let (mut surname, mut given) = (p.surname.clone(), p.given.clone());
    let mut street = p.street.clone();
    let mut city = p.city.clone();
    if p.chinese {
        // A till typed in pinyin (the POS most often), or traditional characters.
        if rng.chance(if source == 1 { 40 } else { 10 }) {
            surname = cdp_identity::fuzzy::prepare::normalise_text(&surname).replace(' ', "");
            given = cdp_identity::fuzzy::prepare::normalise_text(&given).replace(' ', "");
        } else if rng.chance(15) {
            surname = traditional(&surname);
            given = traditional(&given);
        }
        if rng.chance(15) {
            street = if street.contains('路') {
                street.replace('路', "街")
            } else {
                street.replace('街', "路")
            };
        }
        if rng.chance(30) {
            city = city.trim_end_matches('市').to_string();
        }
        if rng.chance(10) {
            street = traditional(&street);
        }
    } else {
        if rng.chance(12) {
            surname = typo(rng, &surname);
        }
        if rng.chance(12) {
            given = typo(rng, &given);
        }
        if rng.chance(30) {
            street = street.replace("street", "st").replace("road", "rd");
        }
    }
    values.insert("last_name".to_string(), surname);
    if !(given.is_empty() || rng.chance(5)) {
        values.insert("first_name".to_string(), given);
    }
    let (y, mut m, mut d) = p.birthday;
    if !rng.chance(15) {
        if rng.chance(3) {
            std::mem::swap(&mut m, &mut d);
        }
        let mut text = format!("{y:04}-{m:02}-{d:02}");
        if rng.chance(3) {
            text = digit_typo(rng, &text);
        }
        values.insert("birthday".to_string(), text);
    }
    if !rng.chance(30) {
        values.insert("gender".to_string(), p.gender.to_string());
    }
    if !rng.chance(40) {
        let phone = if rng.chance(5) {
            digit_typo(rng, &p.phone)
        } else {
            p.phone.clone()
        };
        values.insert("phone".to_string(), phone);
    }
    if !rng.chance(10) {
        values.insert("address.street".to_string(), street);
    }
    if !rng.chance(10) {
        values.insert("address.city".to_string(), city);
    }
    if !rng.chance(20) {
        values.insert("address.postal_code".to_string(), p.postcode.clone());
    }
    values
}

/// `people` people, each in two or three of the three systems.
pub fn generate(people: usize, seed: u64) -> Vec<NoisyRecord> {
    let mut rng = Rng::new(seed);
    let mut records = Vec::new();
    for entity in 0..people as u64 {
        let p = person(&mut rng);
        let missing = if rng.chance(40) {
            Some(rng.below(3) as usize)
        } else {
            None
        };
        for source in 0..3 {
            if Some(source) == missing {
                continue;
            }
            records.push(NoisyRecord {
                entity,
                source,
                values: record(&mut rng, &p, source),
            });
        }
    }
    records
}

/// What each system calls its record: (file, identifier type, prefix).
const SYSTEMS: [(&str, &str, &str); 3] = [
    ("crm", "crm_id", "C"),
    ("pos", "member_id", "M"),
    ("online", "user_id", "u-"),
];

/// One record as a Segment `identify` of its system: the record's own id (a CRM id, a member
/// card, a user id) and the traits as written, the address nested as Segment's spec has it.
pub fn message(record: &NoisyRecord, number: usize) -> serde_json::Value {
    let (_, kind, prefix) = SYSTEMS[record.source];
    let id = format!("{prefix}{number:07}");
    let mut traits = serde_json::Map::new();
    let mut address = serde_json::Map::new();
    for (name, value) in &record.values {
        match name.strip_prefix("address.") {
            Some(part) => address.insert(part.to_string(), value.clone().into()),
            None => traits.insert(name.clone(), value.clone().into()),
        };
    }
    if !address.is_empty() {
        traits.insert("address".into(), address.into());
    }
    if kind == "user_id" {
        serde_json::json!({"type": "identify", "userId": id, "traits": traits})
    } else {
        serde_json::json!({"type": "identify", "anonymousId": format!("import:{id}"),
            "context": {"externalIds": [{"id": id, "type": kind, "collection": "users",
                "encoding": "none"}]},
            "traits": traits})
    }
}

/// `cdp demo generate --noisy`: crm.jsonl, pos.jsonl and online.jsonl (import each with
/// `cdp import`) and truth.csv (`type,value,person`: each record's id and its person).
pub fn write(people: u64, seed: u64, out: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let records = generate(usize::try_from(people)?, seed);
    let mut files = Vec::new();
    for (name, _, _) in SYSTEMS {
        let path = out.join(format!("{name}.jsonl"));
        files.push(std::io::BufWriter::new(
            std::fs::File::create(&path)
                .with_context(|| format!("cannot write {}", path.display()))?,
        ));
    }
    let mut truth = std::io::BufWriter::new(std::fs::File::create(out.join("truth.csv"))?);
    writeln!(truth, "type,value,person")?;
    for (number, record) in records.iter().enumerate() {
        let (_, kind, prefix) = SYSTEMS[record.source];
        writeln!(files[record.source], "{}", message(record, number))?;
        writeln!(truth, "{kind},{prefix}{number:07},p{}", record.entity)?;
    }
    for file in &mut files {
        file.flush()?;
    }
    truth.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn people_come_in_two_or_three_systems_with_variants() {
        let records = generate(500, 1);
        let mut per_person = std::collections::BTreeMap::new();
        for r in &records {
            *per_person.entry(r.entity).or_insert(0) += 1;
        }
        assert!(per_person.values().all(|n| (2..=3).contains(n)));
        let names: Vec<&String> = records
            .iter()
            .filter_map(|r| r.values.get("last_name"))
            .collect();
        assert!(
            names
                .iter()
                .any(|n| n.chars().any(|c| c == '張' || c == '陳'))
        );
        assert!(
            names
                .iter()
                .any(|n| n.starts_with("zhang") || n.starts_with("wang"))
        );
        assert!(records.iter().any(|r| !r.values.contains_key("birthday")));
        assert_eq!(generate(500, 1).len(), records.len());
        let chinese = records
            .iter()
            .find(|r| r.source == 1 && r.values.contains_key("address.street"))
            .unwrap();
        let message = message(chinese, 3);
        assert_eq!(message["context"]["externalIds"][0]["id"], "M0000003");
        assert_eq!(message["context"]["externalIds"][0]["type"], "member_id");
        assert!(
            message["traits"]["address"]["street"].is_string(),
            "{message}"
        );
        assert!(message["traits"].get("address.street").is_none());
    }
}
