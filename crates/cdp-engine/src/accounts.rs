//! Named operator accounts and their console sessions.
//!
//! Tokens name whoever `cdp token issue --subject` said; accounts give the console (and the
//! audit log) a person behind every action. Keys in `Keyspace::Accounts`, all sealed with the
//! system key:
//! - `acct/<name>` -> [`AccountRecord`]: roles, purposes, the argon2id hash of the password,
//!   the TOTP secret if the account has a second factor, failed attempts and lock-out.
//! - `sess/<SHA-256 of the session token>` -> [`SessionRecord`]: which account, its CSRF
//!   token, when it started and was last used. The session token itself is only in the
//!   operator's cookie: a copy of the store opens no session.
//!
//! Sign-in, sign-out, lock-out and account changes are audit entries naming the account (or
//! `(unknown account)`: a name nobody has is not recorded, it may be a mistyped password).

use cdp_store::{Keyspace, WriteBatch};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::audit::AuditRecord;
use crate::records::hex;
use crate::{Engine, EngineError};

/// Consecutive failed sign-ins after which an account is locked.
pub const MAX_FAILED_SIGN_INS: u32 = 5;
/// How long a lock-out lasts.
pub const LOCK_OUT: Duration = Duration::minutes(15);
/// A session unused this long has ended (OWASP: 15-30 minutes for sensitive applications).
pub const SESSION_IDLE: Duration = Duration::minutes(30);
/// A session ends this long after sign-in however busy it is.
pub const SESSION_MAX: Duration = Duration::hours(12);
/// `last_seen` is written at most this often (a session read is not a write each time).
const TOUCH_EVERY: Duration = Duration::seconds(60);
const MAX_NAME: usize = 64;
const UNKNOWN_ACCOUNT: &str = "(unknown account)";

/// An operator account (`acct/<name>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountRecord {
    pub name: String,
    pub roles: Vec<String>,
    /// Purposes the operator may state (narrows what the roles allow; empty: all they allow).
    pub purposes: Vec<String>,
    password_hash: String,
    totp_secret: Option<Vec<u8>>,
    /// The last TOTP time step used (each code signs in once).
    totp_last_step: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub failed_sign_ins: u32,
    #[serde(with = "time::serde::rfc3339::option")]
    pub locked_until: Option<OffsetDateTime>,
    pub disabled: bool,
}

impl AccountRecord {
    pub fn has_totp(&self) -> bool {
        self.totp_secret.is_some()
    }
}

/// A console session (`sess/<hash of its token>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRecord {
    pub account: String,
    /// The synchroniser token every state-changing console request must send back
    /// (`X-CSRF-Token`).
    pub csrf: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: OffsetDateTime,
}

impl SessionRecord {
    fn ended_at(&self) -> OffsetDateTime {
        (self.last_seen + SESSION_IDLE).min(self.started_at + SESSION_MAX)
    }
}

/// What a new account is made of.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub name: String,
    pub roles: Vec<String>,
    pub purposes: Vec<String>,
    pub password: String,
    /// Give the account a second factor: the answer carries the secret (shown once).
    pub totp: bool,
}

/// A signed-in operator, as a request sees it.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub account: AccountRecord,
    pub session: SessionRecord,
}

/// Why a sign-in was refused. Deliberately coarse where detail would help an attacker: an
/// unknown name and a wrong password are the same answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInRefusal {
    /// Unknown name, wrong password, wrong or reused code, or a disabled account.
    Failed,
    /// The password was right and the account needs its one-time code.
    CodeRequired,
    /// Too many failures: signing in is refused until then, whatever is given.
    Locked { until: OffsetDateTime },
}

fn account_key(name: &str) -> Vec<u8> {
    [b"acct/".as_slice(), name.as_bytes()].concat()
}

fn session_key(token: &str) -> Vec<u8> {
    [b"sess/".as_slice(), &cdp_crypto::secret_hash(token)].concat()
}

fn check_name(name: &str) -> Result<(), EngineError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(EngineError::InvalidRequest(format!(
            "name must be 1 to {MAX_NAME} letters, digits or . _ - @"
        )))
    }
}

impl Engine {
    fn check_roles_and_purposes(
        &self,
        roles: &[String],
        purposes: &[String],
    ) -> Result<(), EngineError> {
        if roles.is_empty() {
            return Err(EngineError::InvalidRequest(
                "an account needs at least one role".into(),
            ));
        }
        for role in roles {
            role.parse::<cdp_policy::Role>().map_err(|_| {
                EngineError::InvalidRequest(format!(
                    "unknown role {role:?}; roles are {}",
                    cdp_policy::Role::ALL
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        }
        let caller = cdp_policy::CallerFacts {
            roles: roles.to_vec(),
            purposes: Vec::new(),
        };
        for purpose in purposes {
            self.known_purpose(purpose)?;
            if !self.policies().caller_may_use(&caller, purpose) {
                return Err(EngineError::InvalidRequest(format!(
                    "the role(s) {} may not state the purpose {purpose} (roles.yaml)",
                    roles.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Creates an account; returns it and, when it has a second factor, the TOTP secret in
    /// base32 (shown once, for the operator's authenticator app).
    pub fn create_account(
        &self,
        actor: &str,
        new: NewAccount,
    ) -> Result<(AccountRecord, Option<String>, cdp_store::CommitTicket), EngineError> {
        let name = new.name.trim().to_string();
        check_name(&name)?;
        self.check_roles_and_purposes(&new.roles, &new.purposes)?;
        cdp_crypto::check_new_password(&new.password)
            .map_err(|rule| EngineError::InvalidRequest(rule.to_string()))?;
        let password_hash = cdp_crypto::hash_password(&new.password)?;
        let totp_secret = if new.totp {
            Some(cdp_crypto::new_totp_secret()?.to_vec())
        } else {
            None
        };
        let account = AccountRecord {
            name: name.clone(),
            roles: new.roles,
            purposes: new.purposes,
            password_hash,
            totp_secret: totp_secret.clone(),
            totp_last_step: 0,
            created_at: OffsetDateTime::now_utc(),
            failed_sign_ins: 0,
            locked_until: None,
            disabled: false,
        };
        let _guard = self.write_lock()?;
        let key = account_key(&name);
        if self.store().get(Keyspace::Accounts, &key)?.is_some() {
            return Err(EngineError::Conflict(format!(
                "an account named {name:?} already exists"
            )));
        }
        let mut batch = WriteBatch::new();
        batch.put(
            Keyspace::Accounts,
            key.clone(),
            self.seal_system(Keyspace::Accounts, &key, &account)?,
        );
        let ticket = self.commit_audited(batch, &[account_event(actor, "account.create")])?;
        Ok((
            account,
            totp_secret.map(|secret| cdp_crypto::base32(&secret)),
            ticket,
        ))
    }

    pub fn account(&self, name: &str) -> Result<Option<AccountRecord>, EngineError> {
        self.get_system(Keyspace::Accounts, &account_key(name))
    }

    pub fn accounts(&self) -> Result<Vec<AccountRecord>, EngineError> {
        let mut accounts = Vec::new();
        for item in self.store().scan_prefix(Keyspace::Accounts, b"acct/") {
            let (key, sealed) = item?;
            accounts.push(self.open_system::<AccountRecord>(Keyspace::Accounts, &key, &sealed)?);
        }
        accounts.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(accounts)
    }

    /// Disables an account and ends its sessions (the record stays: the audit log names it).
    pub fn disable_account(
        &self,
        actor: &str,
        name: &str,
    ) -> Result<cdp_store::CommitTicket, EngineError> {
        self.change_account(
            actor,
            name,
            "account.disable",
            |account, batch, sessions| {
                account.disabled = true;
                for (session_key, session) in sessions {
                    if session.account == account.name {
                        batch.delete(Keyspace::Accounts, session_key);
                    }
                }
            },
        )
    }

    /// Lifts a lock-out now (an administrator who has spoken with the operator).
    pub fn unlock_account(
        &self,
        actor: &str,
        name: &str,
    ) -> Result<cdp_store::CommitTicket, EngineError> {
        self.change_account(actor, name, "account.unlock", |account, _, _| {
            account.failed_sign_ins = 0;
            account.locked_until = None;
        })
    }

    /// An administrator's change to an account, under the write lock, with its audit entry
    /// (`action`, the account named in the rules). `change` sees the live sessions too.
    fn change_account(
        &self,
        actor: &str,
        name: &str,
        action: &str,
        change: impl FnOnce(&mut AccountRecord, &mut WriteBatch, Vec<(Vec<u8>, SessionRecord)>),
    ) -> Result<cdp_store::CommitTicket, EngineError> {
        let _guard = self.write_lock()?;
        let key = account_key(name);
        let mut account: AccountRecord = self
            .get_system(Keyspace::Accounts, &key)?
            .ok_or_else(|| EngineError::NotFound(format!("account {name:?}")))?;
        let mut batch = WriteBatch::new();
        change(&mut account, &mut batch, self.sessions()?);
        batch.put(
            Keyspace::Accounts,
            key.clone(),
            self.seal_system(Keyspace::Accounts, &key, &account)?,
        );
        let mut record = account_event(actor, action);
        record.rules = vec![format!("account:{name}")];
        self.commit_audited(batch, &[record])
    }

    fn sessions(&self) -> Result<Vec<(Vec<u8>, SessionRecord)>, EngineError> {
        let mut sessions = Vec::new();
        for item in self.store().scan_prefix(Keyspace::Accounts, b"sess/") {
            let (key, sealed) = item?;
            let session = self.open_system(Keyspace::Accounts, &key, &sealed)?;
            sessions.push((key, session));
        }
        Ok(sessions)
    }

    /// Checks a name, password and (when the account has one) one-time code; on success
    /// starts a session and returns its token (for the cookie) with the session.
    ///
    /// The password is verified outside the write lock (argon2 takes tens of milliseconds by
    /// design); failures, lock-outs and the new session are written under it, re-reading the
    /// account so concurrent attempts all count.
    pub fn sign_in(
        &self,
        name: &str,
        password: &str,
        code: Option<&str>,
    ) -> Result<Result<(String, SignedIn), SignInRefusal>, EngineError> {
        let now = OffsetDateTime::now_utc();
        let known = if check_name(name).is_ok() {
            self.account(name)?
        } else {
            None
        };
        let Some(account) = known else {
            // As long as for a real account: no enumeration of names by timing.
            cdp_crypto::verify_password(password, cdp_crypto::decoy_password_hash());
            self.audit(&[sign_in_event(UNKNOWN_ACCOUNT, "deny", "sign_in:failed")])?
                .wait_durable()?;
            return Ok(Err(SignInRefusal::Failed));
        };
        if let Some(until) = account.locked_until.filter(|until| *until > now) {
            self.audit(&[sign_in_event(&account.name, "deny", "sign_in:locked")])?
                .wait_durable()?;
            return Ok(Err(SignInRefusal::Locked { until }));
        }
        let password_ok = cdp_crypto::verify_password(password, &account.password_hash);
        let _guard = self.write_lock()?;
        let key = account_key(&account.name);
        let mut account: AccountRecord = self
            .get_system(Keyspace::Accounts, &key)?
            .ok_or_else(|| EngineError::NotFound("account".into()))?;
        let mut batch = WriteBatch::new();
        let code_step = match (&account.totp_secret, password_ok) {
            (Some(secret), true) => match code {
                None | Some("") => {
                    return Ok(Err(SignInRefusal::CodeRequired));
                }
                Some(code) => cdp_crypto::totp_match(
                    secret,
                    code,
                    now.unix_timestamp(),
                    account.totp_last_step,
                )
                .map(Some),
            },
            (None, true) => Some(None),
            (_, false) => None,
        };
        let Some(code_step) = code_step.filter(|_| !account.disabled) else {
            account.failed_sign_ins += 1;
            let mut rule = "sign_in:failed";
            if account.failed_sign_ins >= MAX_FAILED_SIGN_INS {
                account.locked_until = Some(now + LOCK_OUT);
                account.failed_sign_ins = 0;
                rule = "sign_in:locked_out";
                tracing::warn!(account = %account.name, minutes = LOCK_OUT.whole_minutes(), "account locked after repeated failed sign-ins");
            }
            batch.put(
                Keyspace::Accounts,
                key.clone(),
                self.seal_system(Keyspace::Accounts, &key, &account)?,
            );
            self.commit_audited(batch, &[sign_in_event(&account.name, "deny", rule)])?
                .wait_durable()?;
            return Ok(Err(SignInRefusal::Failed));
        };
        account.failed_sign_ins = 0;
        account.locked_until = None;
        if let Some(step) = code_step {
            account.totp_last_step = step;
        }
        batch.put(
            Keyspace::Accounts,
            key.clone(),
            self.seal_system(Keyspace::Accounts, &key, &account)?,
        );
        // Ended sessions of anyone are cleared on the way (sign-ins are rare, sessions few).
        for (old_key, old) in self.sessions()? {
            if old.ended_at() <= now {
                batch.delete(Keyspace::Accounts, old_key);
            }
        }
        let token = format!("cdps_{}", hex::encode(&cdp_crypto::random_bytes::<32>()?));
        let session = SessionRecord {
            account: account.name.clone(),
            csrf: hex::encode(&cdp_crypto::random_bytes::<32>()?),
            started_at: now,
            last_seen: now,
        };
        let key = session_key(&token);
        batch.put(
            Keyspace::Accounts,
            key.clone(),
            self.seal_system(Keyspace::Accounts, &key, &session)?,
        );
        let rule = if code_step.is_some() {
            "sign_in:password_and_code"
        } else {
            "sign_in:password"
        };
        self.commit_audited(batch, &[sign_in_event(&account.name, "allow", rule)])?
            .wait_durable()?;
        Ok(Ok((token, SignedIn { account, session })))
    }

    /// The operator behind a session token, if the session is live and its account enabled.
    pub fn session(&self, token: &str) -> Result<Option<SignedIn>, EngineError> {
        if token.len() > 128 {
            return Ok(None);
        }
        let key = session_key(token);
        let Some(mut session) = self.get_system::<SessionRecord>(Keyspace::Accounts, &key)? else {
            return Ok(None);
        };
        let now = OffsetDateTime::now_utc();
        if session.ended_at() <= now {
            return Ok(None);
        }
        let Some(account) = self.account(&session.account)?.filter(|a| !a.disabled) else {
            return Ok(None);
        };
        if now - session.last_seen >= TOUCH_EVERY {
            session.last_seen = now;
            let mut batch = WriteBatch::new();
            batch.put(
                Keyspace::Accounts,
                key.clone(),
                self.seal_system(Keyspace::Accounts, &key, &session)?,
            );
            // Not waited for: losing a touch in a crash only shortens the session.
            let _not_waited_for = self.store().commit(batch)?;
        }
        Ok(Some(SignedIn { account, session }))
    }

    /// Ends a session.
    pub fn sign_out(&self, token: &str) -> Result<(), EngineError> {
        let key = session_key(token);
        let Some(session) = self.get_system::<SessionRecord>(Keyspace::Accounts, &key)? else {
            return Ok(());
        };
        let mut batch = WriteBatch::new();
        batch.delete(Keyspace::Accounts, key);
        self.commit_audited(
            batch,
            &[account_event(&session.account, "account.sign_out")],
        )?
        .wait_durable()?;
        Ok(())
    }
}

fn account_event(actor: &str, action: &str) -> AuditRecord {
    AuditRecord {
        actor: actor.to_string(),
        action: action.to_string(),
        purpose: None,
        person: None,
        decision: "done".into(),
        rules: Vec::new(),
    }
}

fn sign_in_event(actor: &str, decision: &str, rule: &str) -> AuditRecord {
    AuditRecord {
        actor: actor.to_string(),
        action: "account.sign_in".into(),
        purpose: None,
        person: None,
        decision: decision.into(),
        rules: vec![rule.to_string()],
    }
}
