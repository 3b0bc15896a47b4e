//! The control rules at apply time (records in [`super::controls`]).
//!
//! Same discipline as the rest of the state machine: every check happens
//! before the first mutation, so a refused operation changes nothing.
//!
//! Money rules, in one place:
//! - An account's balance splits into purpose-bound lots (each with a
//!   reserved part) and free funds; free funds are partly reserved by held
//!   payments. `free = balance − Σ lots − reserved_free ≥ 0` always.
//! - A payment spends the lots that may pay its payee first (earliest
//!   expiry first), then free funds. The payee always receives free money.
//! - A held payment reserves its parts; executing it spends them, voiding
//!   it releases them. Nothing leaves the payer's balance until it executes,
//!   so Σ balances = issued − redeemed is untouched by holds.
//! - An expired purpose's unreserved lots go back to the issuer (or out of
//!   circulation, for the central bank) at the seal of the first block at
//!   or after the expiry.

use super::*;
use crate::state::controls::{
    AccountControls, ControlParams, HoldKind, Lot, Pending, Purpose, Signatories, EXPIRIES_MAX_PER_BLOCK,
    MAX_FRAUD_REGISTRY, MAX_HOLD_WINDOW_MS, MAX_LOTS_PER_ACCOUNT, MAX_PENDING_PER_ACCOUNT, MAX_PENDING_TOTAL,
    MAX_PURPOSES,
};
use crate::types::Tier;

/// How a credit lands: what the payee keeps, what the waterfall sweeps
/// and to which settlement account. Deltas, not new balances: the payer
/// may be that settlement account, debited after the plan was made.
struct Credit {
    keep: Kopecks,
    swept: Kopecks,
    settlement: Option<u32>,
}

/// How a payment is funded: from free funds and from lots.
struct Split {
    free_part: Kopecks,
    lot_parts: Vec<(u32, Kopecks)>,
}

impl State {
    /// Marks an account as named by a control record (see `Slot::ctl`).
    fn mark_ctl(&mut self, id: &AccountId) {
        if let Some(at) = self.slot_of(id) {
            self.slots[at as usize].ctl = true;
        }
    }

    /// The limits that bind `a`: its kind's, tightened by its tier's below `Full`.
    pub fn limits_of(&self, a: &Account) -> Limits {
        self.controls.limits_for(&a.id, a.kind, self.params.limits(a.kind))
    }

    /// Balance parts of an account: (free and unreserved, purpose-bound, reserved).
    pub fn balance_parts(&self, id: &AccountId) -> (Kopecks, Kopecks, Kopecks) {
        self.acct(id)
            .map_or((0, 0, 0), |a| self.controls.balance_parts(id, a.balance))
    }

    /// Free funds of `a` not reserved (not purpose-bound).
    fn free_of(&self, a: &Account) -> Kopecks {
        self.controls.balance_parts(&a.id, a.balance).0
    }

    /// Funds `amount` for `payer` paying `payee` at `ts`, lots first.
    fn split(&self, ts: u64, payer: &Account, payee: &AccountId, amount: Kopecks) -> Result<Split, Reason> {
        let category = self.controls.accounts.get(payee).map_or(0, |c| c.category);
        let mut eligible: Vec<(u64, u32, Kopecks)> = Vec::new();
        let mut tagged = 0u64;
        let mut lot_reserved = 0u64;
        for (purpose, lot) in self.controls.lots_of(&payer.id) {
            tagged += lot.amount;
            lot_reserved += lot.reserved;
            let p = self.controls.purposes.get(&purpose).expect("a lot's purpose exists");
            if p.allows(ts, payee, category) && lot.amount > lot.reserved {
                eligible.push((p.expires_at_ms, purpose, lot.amount - lot.reserved));
            }
        }
        eligible.sort_unstable();
        let reserved_free = self.controls.reserved_free(&payer.id);
        let free = payer.balance - tagged - reserved_free;
        let mut left = amount;
        let mut lot_parts = Vec::new();
        for (_, purpose, avail) in eligible {
            if left == 0 {
                break;
            }
            let take = avail.min(left);
            lot_parts.push((purpose, take));
            left -= take;
        }
        if left > free {
            return Err(if amount > payer.balance {
                Reason::InsufficientFunds
            } else if amount > payer.balance - reserved_free - lot_reserved {
                Reason::FundsReserved
            } else {
                Reason::PurposeRestricted
            });
        }
        lot_parts.sort_unstable();
        Ok(Split {
            free_part: left,
            lot_parts,
        })
    }

    /// Plans crediting `amount` to the account at slot `qi`, with the
    /// waterfall if the wallet has it and `sweepable`.
    fn plan_credit(&self, qi: u32, amount: Kopecks, sweepable: bool) -> Result<Credit, Reason> {
        let payee = &self.slots[qi as usize].account;
        let balance = payee.balance.checked_add(amount).ok_or(Reason::Overflow)?;
        let cap = self.limits_of(payee).balance_cap;
        if balance <= cap {
            return Ok(Credit {
                keep: amount,
                swept: 0,
                settlement: None,
            });
        }
        let sweep = sweepable && self.controls.accounts.get(&payee.id).is_some_and(|c| c.sweep);
        if !sweep {
            return Err(Reason::BalanceLimitExceeded);
        }
        let keep = cap.saturating_sub(payee.balance).min(amount);
        let swept = amount - keep;
        let si = self.slot_of(&payee.bank).ok_or(Reason::UnknownBank)?;
        let settlement = &self.slots[si as usize].account;
        Self::usable(settlement)?;
        let sb = settlement.balance.checked_add(swept).ok_or(Reason::Overflow)?;
        if sb > self.limits_of(settlement).balance_cap {
            return Err(Reason::BalanceLimitExceeded);
        }
        Ok(Credit {
            keep,
            swept,
            settlement: Some(si),
        })
    }

    fn do_credit(&mut self, qi: u32, c: &Credit) {
        self.remember_at(qi);
        self.slots[qi as usize].account.balance += c.keep;
        if let Some(si) = c.settlement {
            self.remember_at(si);
            self.slots[si as usize].account.balance += c.swept;
            let bank = self.slots[si as usize].account.id;
            self.also.push(bank);
        }
    }

    /// Checks everything a payment needs except funds and holds: statuses,
    /// kinds, phase, caps. Returns the payer's new outflow counter.
    fn check_payment(&self, ts: u64, pi: u32, qi: u32, amount: Kopecks) -> Result<(u64, Kopecks), Reason> {
        let payer = &self.slots[pi as usize].account;
        let payee = &self.slots[qi as usize].account;
        Self::payable(payer)?;
        Self::usable(payee)?;
        if payer.kind == AccountKind::CentralBank || payee.kind == AccountKind::CentralBank {
            return Err(Reason::NotAuthorised);
        }
        if payer.kind == AccountKind::Settlement {
            self.require_active_bank(&payer.id)?;
        }
        if (payer.kind == AccountKind::Retail || payee.kind == AccountKind::Retail) && self.params.phase < Phase::Retail
        {
            return Err(Reason::PhaseNotOpen);
        }
        let limits = self.limits_of(payer);
        if amount > limits.payment_cap {
            return Err(Reason::PaymentLimitExceeded);
        }
        let day = ts / MS_PER_DAY;
        let outflow = payer.outflow_on(day).saturating_add(amount);
        if outflow > limits.daily_outflow_cap {
            return Err(Reason::DailyLimitExceeded);
        }
        Ok((day, outflow))
    }

    /// Moves a funded payment: debits the payer (lots and free funds),
    /// credits the payee. `reserved`: the parts were reserved by a hold.
    #[allow(clippy::too_many_arguments)]
    fn execute_payment(
        &mut self,
        pi: u32,
        qi: u32,
        amount: Kopecks,
        split: &Split,
        credit: &Credit,
        outflow: (u64, Kopecks),
        reserved: bool,
    ) {
        let payer_id = self.slots[pi as usize].account.id;
        let payee_id = self.slots[qi as usize].account.id;
        for &(purpose, part) in &split.lot_parts {
            let mut lot = self.controls.lots[&(payer_id, purpose)];
            lot.amount -= part;
            if reserved {
                lot.reserved -= part;
            }
            self.controls.set_lot(payer_id, purpose, lot);
        }
        self.remember_at(pi);
        let payer = &mut self.slots[pi as usize].account;
        payer.balance -= amount;
        payer.outflow_day = outflow.0;
        payer.outflow_today = outflow.1;
        self.do_credit(qi, credit);
        let hold = self.controls.params.hold_threshold;
        if hold > 0 && amount >= hold {
            self.controls.add_known(payer_id, payee_id);
        }
    }

    /// The transfer rules with controls in play (see `State::transfer`).
    pub(super) fn transfer_controlled(
        &mut self,
        ts: u64,
        tx_id: TxId,
        signer: AccountId,
        pi: u32,
        qi: u32,
        amount: Kopecks,
    ) -> Result<Effect, Reason> {
        let outflow = self.check_payment(ts, pi, qi, amount)?;
        let payer = &self.slots[pi as usize].account;
        let payee_id = self.slots[qi as usize].account.id;
        let split = self.split(ts, payer, &payee_id, amount)?;
        let payer_id = payer.id;
        // Which hold, if any: signatories first (a business rule the payer
        // set), then the anti-fraud rules. Purpose-bound money is never held
        // by the anti-fraud rules: its issuer already named its payees.
        let ctl = self.controls.accounts.get(&payer_id);
        let mut approvals = Vec::new();
        let mut kind = None;
        if let Some(s) = ctl
            .and_then(|c| c.signatories.as_ref())
            .filter(|s| amount >= s.min_amount)
        {
            if s.keys.contains(&signer) {
                approvals.push(signer);
            }
            if approvals.len() < s.required as usize {
                kind = Some(HoldKind::Signatures);
            }
        }
        if kind.is_none() && split.lot_parts.is_empty() {
            let hold = self.controls.params.hold_threshold;
            if self.controls.fraud.contains_key(&payee_id) {
                kind = Some(HoldKind::FraudRegistry);
            } else if hold > 0 && amount >= hold && !self.controls.is_known(&payer_id, &payee_id) {
                kind = Some(HoldKind::NewPayee);
            }
        }
        let Some(kind) = kind else {
            let credit = self.plan_credit(qi, amount, true)?;
            self.execute_payment(pi, qi, amount, &split, &credit, outflow, false);
            return Ok(if credit.swept > 0 {
                Effect::Swept { amount: credit.swept }
            } else {
                Effect::None
            });
        };
        // A held payment must be able to land when it executes: the payee's
        // cap is checked now as well as then.
        self.plan_credit(qi, amount, true)?;
        if self.controls.pending.len() >= MAX_PENDING_TOTAL
            || self.controls.pending_count.get(&payer_id).copied().unwrap_or(0) >= MAX_PENDING_PER_ACCOUNT
        {
            return Err(Reason::CapacityReached);
        }
        let deadline_ms = ts.saturating_add(self.controls.params.hold_window_ms);
        for &(purpose, part) in &split.lot_parts {
            let mut lot = self.controls.lots[&(payer_id, purpose)];
            lot.reserved += part;
            self.controls.set_lot(payer_id, purpose, lot);
        }
        self.controls.set_pending(
            tx_id,
            Some(Pending {
                payer: payer_id,
                payee: payee_id,
                amount,
                kind,
                deadline_ms,
                free_part: split.free_part,
                lot_parts: split.lot_parts,
                approvals,
            }),
        );
        self.mark_ctl(&payer_id);
        self.mark_ctl(&payee_id);
        Ok(Effect::Held { until_ms: deadline_ms })
    }

    /// Executes a held payment (confirmation, release or the last approval).
    fn settle_pending(&mut self, ts: u64, id: TxId, p: &Pending) -> Result<Effect, Reason> {
        let pi = self.slot_of(&p.payer).ok_or(Reason::UnknownAccount)?;
        let qi = self.slot_of(&p.payee).ok_or(Reason::UnknownAccount)?;
        let outflow = self.check_payment(ts, pi, qi, p.amount)?;
        let category = self.controls.accounts.get(&p.payee).map_or(0, |c| c.category);
        for &(purpose, _) in &p.lot_parts {
            let allowed = self
                .controls
                .purposes
                .get(&purpose)
                .is_some_and(|d| d.allows(ts, &p.payee, category));
            if !allowed {
                return Err(Reason::PurposeRestricted);
            }
        }
        let credit = self.plan_credit(qi, p.amount, true)?;
        let split = Split {
            free_part: p.free_part,
            lot_parts: p.lot_parts.clone(),
        };
        self.controls.set_pending(id, None);
        self.execute_payment(pi, qi, p.amount, &split, &credit, outflow, true);
        self.also.extend([p.payer, p.payee]);
        Ok(Effect::Settled { swept: credit.swept })
    }

    /// Releases a held payment's reservation (void or deadline).
    fn void_pending(&mut self, id: TxId) {
        let p = self.controls.pending[&id].clone();
        for &(purpose, part) in &p.lot_parts {
            let mut lot = self.controls.lots[&(p.payer, purpose)];
            lot.reserved -= part;
            self.controls.set_lot(p.payer, purpose, lot);
        }
        self.controls.set_pending(id, None);
    }

    /// The held payment `id`, if it may still be acted on at `ts`.
    fn live_pending(&self, ts: u64, id: &TxId) -> Result<Pending, Reason> {
        let p = self.controls.pending.get(id).ok_or(Reason::UnknownPayment)?;
        if p.deadline_ms < ts {
            return Err(Reason::PaymentExpired);
        }
        Ok(p.clone())
    }

    /// Why `signer` may not act for `payer`: its key was rotated away, or it
    /// never was the payer's.
    fn not_the_payer(&self, signer: &AccountId, payer: &AccountId) -> Reason {
        if self.controls.retired.get(signer) == Some(payer) {
            Reason::KeyRevoked
        } else {
            Reason::NotAuthorised
        }
    }

    /// A client account of the signing bank (the central bank may act on any client account).
    fn client_of(&self, signer: &AccountId, account: &AccountId, cb_allowed: bool) -> Result<&Account, Reason> {
        let by_cb = cb_allowed && self.is_central_bank(signer);
        if !by_cb {
            self.require_active_bank(signer)?;
        }
        let a = self.acct(account).ok_or(Reason::UnknownAccount)?;
        if !matches!(a.kind, AccountKind::Business | AccountKind::Retail) {
            return Err(Reason::InvalidKind);
        }
        if !by_cb && a.bank != *signer {
            return Err(Reason::NotAuthorised);
        }
        if a.status == AccountStatus::Closed {
            return Err(Reason::AccountClosed);
        }
        Ok(a)
    }

    /// Applies one of the control operations (all but the wave-1 ones).
    pub(super) fn apply_control(&mut self, ts: u64, signer: AccountId, op: &Op) -> Result<Effect, Reason> {
        match op {
            &Op::FreezeReceiveOnly { account } => self.freeze_receive_only(signer, account),
            &Op::SetControls {
                hold_threshold,
                hold_window_ms,
                protected_minimum,
            } => {
                self.require_central_bank(&signer)?;
                if hold_window_ms == 0 || hold_window_ms > MAX_HOLD_WINDOW_MS {
                    return Err(Reason::InvalidRule);
                }
                let p = ControlParams {
                    hold_threshold,
                    hold_window_ms,
                    protected_minimum,
                    ..self.controls.params
                };
                self.controls.set_params(p);
                Ok(Effect::None)
            }
            &Op::SetTierLimits { tier, limits } => {
                self.require_central_bank(&signer)?;
                let mut p = self.controls.params;
                match tier {
                    Tier::Anonymous => p.anonymous = limits,
                    Tier::Simplified => p.simplified = limits,
                    // The full tier's limits are the retail kind's (`SetLimits`).
                    Tier::Full => return Err(Reason::InvalidRule),
                }
                self.controls.set_params(p);
                Ok(Effect::None)
            }
            &Op::FlagFraud { account, flagged } => {
                let by_cb = self.is_central_bank(&signer);
                if !by_cb {
                    self.require_active_bank(&signer)?;
                }
                // Any bank may report any client account: fraudsters bank elsewhere.
                let a = self.acct(&account).ok_or(Reason::UnknownAccount)?;
                if !matches!(a.kind, AccountKind::Business | AccountKind::Retail) {
                    return Err(Reason::InvalidKind);
                }
                match (self.controls.fraud.get(&account), flagged) {
                    (Some(_), true) => return Err(Reason::AlreadyFlagged),
                    (None, false) => return Err(Reason::NotFlagged),
                    // Only the reporter or the central bank takes an entry off.
                    (Some(by), false) if !by_cb && *by != signer => return Err(Reason::NotAuthorised),
                    (None, true) if self.controls.fraud.len() >= MAX_FRAUD_REGISTRY => {
                        return Err(Reason::CapacityReached)
                    }
                    _ => {}
                }
                self.controls.set_fraud(account, flagged.then_some(signer));
                self.mark_ctl(&account);
                Ok(Effect::None)
            }
            &Op::ConfirmPayment { payment } => {
                let p = self.live_pending(ts, &payment)?;
                if p.kind == HoldKind::Signatures {
                    let rule = self.controls.accounts.get(&p.payer).and_then(|c| c.signatories.clone());
                    let Some(rule) = rule.filter(|r| r.keys.contains(&signer)) else {
                        return Err(Reason::NotAuthorised);
                    };
                    if p.approvals.contains(&signer) {
                        return Err(Reason::AlreadyApproved);
                    }
                    if p.approvals.len() + 1 >= rule.required as usize {
                        return self.settle_pending(ts, payment, &p);
                    }
                    let mut next = p;
                    next.approvals.push(signer);
                    next.approvals.sort_unstable();
                    self.controls.set_pending(payment, Some(next));
                    return Ok(Effect::Approved);
                }
                if self.controls.resolve(&signer) != Ok(p.payer) {
                    return Err(self.not_the_payer(&signer, &p.payer));
                }
                self.settle_pending(ts, payment, &p)
            }
            &Op::ReleasePayment { payment } => {
                let p = self.live_pending(ts, &payment)?;
                let payer_bank = self.acct(&p.payer).map(|a| a.bank);
                let by_bank = payer_bank == Some(signer) && self.require_active_bank(&signer).is_ok();
                if p.kind == HoldKind::Signatures || !(self.is_central_bank(&signer) || by_bank) {
                    return Err(Reason::NotAuthorised);
                }
                self.settle_pending(ts, payment, &p)
            }
            &Op::VoidPayment { payment } => {
                let p = self.controls.pending.get(&payment).ok_or(Reason::UnknownPayment)?;
                let payer_bank = self.acct(&p.payer).map(|a| a.bank);
                let allowed = self.is_central_bank(&signer)
                    || (payer_bank == Some(signer) && self.require_active_bank(&signer).is_ok())
                    || self.controls.resolve(&signer) == Ok(p.payer)
                    || (p.kind == HoldKind::Signatures
                        && self
                            .controls
                            .accounts
                            .get(&p.payer)
                            .and_then(|c| c.signatories.as_ref())
                            .is_some_and(|s| s.keys.contains(&signer)));
                if !allowed {
                    return Err(self.not_the_payer(&signer, &p.payer));
                }
                self.void_pending(payment);
                Ok(Effect::None)
            }
            &Op::Collect {
                debtor,
                claimant,
                amount,
            } => self.collect(signer, debtor, claimant, amount),
            Op::DefinePurpose {
                purpose,
                issuer,
                unlock_at_ms,
                expires_at_ms,
                payees,
                categories,
            } => {
                self.require_central_bank(&signer)?;
                if self.controls.purposes.contains_key(purpose) {
                    return Err(Reason::PurposeExists);
                }
                let i = self.acct(issuer).ok_or(Reason::UnknownAccount)?;
                if i.kind == AccountKind::Retail {
                    return Err(Reason::InvalidKind);
                }
                let mut p = payees.clone();
                p.sort_unstable();
                p.dedup();
                let mut c = categories.clone();
                c.sort_unstable();
                c.dedup();
                if p.len() != payees.len()
                    || c.len() != categories.len()
                    || categories.contains(&0)
                    || (payees.is_empty() && categories.is_empty())
                    || unlock_at_ms > expires_at_ms
                    || *expires_at_ms <= ts
                {
                    return Err(Reason::InvalidRule);
                }
                if self.controls.purposes.len() >= MAX_PURPOSES {
                    return Err(Reason::CapacityReached);
                }
                self.controls.set_purpose(
                    *purpose,
                    Some(Purpose {
                        issuer: *issuer,
                        unlock_at_ms: *unlock_at_ms,
                        expires_at_ms: *expires_at_ms,
                        payees: p,
                        categories: c,
                    }),
                );
                Ok(Effect::None)
            }
            &Op::PayTagged { payee, amount, purpose } => self.pay_tagged(ts, signer, payee, amount, purpose),
            &Op::SetCategory { account, category } => {
                self.client_of(&signer, &account, false)?;
                let mut c = self.controls.account(&account);
                c.category = category;
                self.controls.set_account(account, c);
                self.mark_ctl(&account);
                Ok(Effect::None)
            }
            &Op::SetSweep { account, enabled } => {
                self.client_of(&signer, &account, false)?;
                let mut c = self.controls.account(&account);
                c.sweep = enabled;
                self.controls.set_account(account, c);
                self.mark_ctl(&account);
                Ok(Effect::None)
            }
            &Op::SetTier { account, tier } => {
                let a = self.client_of(&signer, &account, false)?;
                if a.kind != AccountKind::Retail {
                    return Err(Reason::InvalidKind);
                }
                let mut c = self.controls.account(&account);
                c.tier = tier;
                self.controls.set_account(account, c);
                self.mark_ctl(&account);
                Ok(Effect::None)
            }
            &Op::RotateKey { account, new_key } => {
                self.client_of(&signer, &account, false)?;
                crate::crypto::check_account_key(&new_key.0)?;
                if self.exists(&new_key)
                    || self.controls.key_index.contains_key(&new_key)
                    || self.controls.retired.contains_key(&new_key)
                {
                    return Err(Reason::KeyInUse);
                }
                let old = self.controls.controller(&account);
                let mut c = self.controls.account(&account);
                c.controller = Some(new_key);
                self.controls.retire(old, account);
                self.controls.set_account(account, c);
                self.mark_ctl(&account);
                Ok(Effect::None)
            }
            Op::SetSignatories {
                account,
                min_amount,
                required,
                keys,
            } => {
                let a = self.client_of(&signer, account, false)?;
                if a.kind != AccountKind::Business {
                    return Err(Reason::InvalidKind);
                }
                let mut k = keys.clone();
                k.sort_unstable();
                k.dedup();
                let none = *required == 0 && keys.is_empty();
                if !none && (k.len() != keys.len() || *required == 0 || *required as usize > keys.len()) {
                    return Err(Reason::InvalidRule);
                }
                for key_ in &k {
                    crate::crypto::check_account_key(&key_.0)?;
                }
                let mut c = self.controls.account(account);
                c.signatories = if none {
                    None
                } else {
                    Some(Signatories {
                        min_amount: *min_amount,
                        required: *required,
                        keys: k,
                    })
                };
                self.controls.set_account(*account, c);
                self.mark_ctl(account);
                Ok(Effect::None)
            }
            _ => unreachable!("wave-1 operations are applied by State::apply"),
        }
    }

    fn freeze_receive_only(&mut self, signer: AccountId, account: AccountId) -> Result<Effect, Reason> {
        let by_cb = self.is_central_bank(&signer);
        if !by_cb {
            self.require_active_bank(&signer)?;
        }
        let a = self.acct(&account).ok_or(Reason::UnknownAccount)?;
        let allowed = if by_cb {
            a.kind != AccountKind::CentralBank
        } else {
            a.bank == signer && matches!(a.kind, AccountKind::Business | AccountKind::Retail)
        };
        if !allowed {
            return Err(Reason::NotAuthorised);
        }
        match a.status {
            AccountStatus::Closed => return Err(Reason::AccountClosed),
            AccountStatus::Frozen => return Err(Reason::AccountFrozen),
            AccountStatus::ReceiveOnly => return Err(Reason::AccountReceiveOnly),
            AccountStatus::Active => {}
        }
        self.remember(account);
        let a = self.acct_mut(&account);
        a.status = AccountStatus::ReceiveOnly;
        a.frozen_by = if by_cb {
            FreezeAuthority::CentralBank
        } else {
            FreezeAuthority::Bank
        };
        Ok(Effect::None)
    }

    fn collect(
        &mut self,
        signer: AccountId,
        debtor: AccountId,
        claimant: AccountId,
        amount: Kopecks,
    ) -> Result<Effect, Reason> {
        if amount == 0 {
            return Err(Reason::ZeroAmount);
        }
        if debtor == claimant {
            return Err(Reason::SelfTransfer);
        }
        // A court order reaches a frozen account too; only closed is final.
        let d = self.client_of(&signer, &debtor, true)?;
        let collectable = self.free_of(d).saturating_sub(self.controls.params.protected_minimum);
        let moved = collectable.min(amount);
        if moved == 0 {
            return Err(Reason::NothingCollectable);
        }
        let di = self.slot_of(&debtor).expect("checked");
        let qi = self.slot_of(&claimant).ok_or(Reason::UnknownAccount)?;
        let c = &self.slots[qi as usize].account;
        Self::usable(c)?;
        if c.kind == AccountKind::CentralBank {
            return Err(Reason::NotAuthorised);
        }
        // No waterfall: the claimant gets what the court ordered, or nothing.
        let credit = self.plan_credit(qi, moved, false)?;
        self.remember_at(di);
        self.slots[di as usize].account.balance -= moved;
        self.do_credit(qi, &credit);
        Ok(Effect::Collected { amount: moved })
    }

    fn pay_tagged(
        &mut self,
        ts: u64,
        signer: AccountId,
        payee: AccountId,
        amount: Kopecks,
        purpose: u32,
    ) -> Result<Effect, Reason> {
        if amount == 0 {
            return Err(Reason::ZeroAmount);
        }
        let p = self.controls.purposes.get(&purpose).ok_or(Reason::UnknownPurpose)?;
        if p.expires_at_ms <= ts {
            return Err(Reason::UnknownPurpose);
        }
        let issuer = p.issuer;
        let by_cb = self.is_central_bank(&signer);
        let payer_id = if by_cb {
            signer
        } else {
            self.controls.resolve(&signer).map_err(|_| Reason::KeyRevoked)?
        };
        if payer_id != issuer {
            return Err(Reason::NotAuthorised);
        }
        if payer_id == payee {
            return Err(Reason::SelfTransfer);
        }
        let qi = self.slot_of(&payee).ok_or(Reason::UnknownAccount)?;
        let q = &self.slots[qi as usize].account;
        Self::usable(q)?;
        if !matches!(q.kind, AccountKind::Business | AccountKind::Retail) {
            return Err(Reason::InvalidKind);
        }
        if q.kind == AccountKind::Retail && self.params.phase < Phase::Retail {
            return Err(Reason::PhaseNotOpen);
        }
        let lot = self.controls.lots.get(&(payee, purpose)).copied().unwrap_or_default();
        if lot.amount == 0 && self.controls.lots_of(&payee).count() >= MAX_LOTS_PER_ACCOUNT {
            return Err(Reason::CapacityReached);
        }
        let new_lot = Lot {
            amount: lot.amount.checked_add(amount).ok_or(Reason::Overflow)?,
            reserved: lot.reserved,
        };
        // Tagged money cannot be swept: it would lose its purpose.
        let credit = self.plan_credit(qi, amount, false)?;
        if by_cb {
            let issued = self.totals.issued.checked_add(amount).ok_or(Reason::Overflow)?;
            self.totals.issued = issued;
        } else {
            let pi = self.slot_of(&payer_id).ok_or(Reason::UnknownAccount)?;
            let outflow = self.check_payment(ts, pi, qi, amount)?;
            let payer = &self.slots[pi as usize].account;
            let (free, tagged, _) = self.controls.balance_parts(&payer.id, payer.balance);
            if free < amount {
                return Err(if payer.balance < amount {
                    Reason::InsufficientFunds
                } else if payer.balance - tagged >= amount {
                    // Enough money that is not purpose-bound, but held payments reserve it.
                    Reason::FundsReserved
                } else {
                    // Tagged money cannot be tagged again.
                    Reason::PurposeRestricted
                });
            }
            self.remember_at(pi);
            let payer = &mut self.slots[pi as usize].account;
            payer.balance -= amount;
            payer.outflow_day = outflow.0;
            payer.outflow_today = outflow.1;
        }
        self.do_credit(qi, &credit);
        self.controls.set_lot(payee, purpose, new_lot);
        self.mark_ctl(&payee);
        Ok(Effect::None)
    }

    /// Voids held payments past their deadline and returns expired
    /// purposes' unreserved funds, as of the open block's timestamp; at
    /// most [`EXPIRIES_MAX_PER_BLOCK`] of them per block.
    pub(super) fn run_expiries(&mut self) {
        let ts = self.open_block().timestamp_ms;
        let mut budget = EXPIRIES_MAX_PER_BLOCK;
        while budget > 0 {
            let Some(&(deadline, id)) = self.controls.deadlines.first() else {
                break;
            };
            if deadline >= ts {
                break;
            }
            self.void_pending(id);
            budget -= 1;
        }
        let due: Vec<u32> = self
            .controls
            .expiries
            .iter()
            .take_while(|(at, _)| *at <= ts)
            .map(|&(_, id)| id)
            .collect();
        for purpose in due {
            if budget == 0 {
                break;
            }
            let issuer = self.controls.purposes[&purpose].issuer;
            let holders: Vec<AccountId> = self
                .controls
                .lots_by_purpose
                .get(&purpose)
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default();
            let mut left = 0usize;
            for holder in holders {
                let lot = self.controls.lots[&(holder, purpose)];
                if lot.amount == lot.reserved {
                    // A held payment still reserves it; it returns once voided.
                    left += 1;
                    continue;
                }
                if budget == 0 {
                    left += 1;
                    continue;
                }
                budget -= 1;
                let back = lot.amount - lot.reserved;
                self.controls.set_lot(
                    holder,
                    purpose,
                    Lot {
                        amount: lot.reserved,
                        reserved: lot.reserved,
                    },
                );
                if lot.reserved > 0 {
                    left += 1;
                }
                let hi = self.slot_of(&holder).expect("a lot's holder exists");
                self.remember_at(hi);
                self.slots[hi as usize].account.balance -= back;
                if self.is_central_bank(&issuer) {
                    self.totals.redeemed += back;
                } else {
                    // Forced return: the issuer's status and caps do not
                    // apply, the money must go back. It cannot overflow:
                    // every balance is at most the money in circulation.
                    let ii = self.slot_of(&issuer).expect("a purpose's issuer exists");
                    self.remember_at(ii);
                    self.slots[ii as usize].account.balance += back;
                }
            }
            if left == 0 {
                self.controls.set_purpose(purpose, None);
            }
        }
    }

    /// Money invariants of the controls, against the accounts (O(records)).
    pub(super) fn check_control_invariants(&self) -> Result<(), String> {
        let mut held: BTreeMap<AccountId, u128> = BTreeMap::new();
        for ((holder, purpose), lot) in &self.controls.lots {
            if !self.controls.purposes.contains_key(purpose) {
                return Err(format!("lot of {holder} names unknown purpose {purpose}"));
            }
            *held.entry(*holder).or_default() += lot.amount as u128;
        }
        for (a, r) in &self.controls.reserved_free {
            *held.entry(*a).or_default() += *r as u128;
        }
        for (id, sum) in held {
            let a = self
                .acct(&id)
                .ok_or_else(|| format!("control records name unknown account {id}"))?;
            if sum > a.balance as u128 {
                return Err(format!("account {id}: lots and reservations exceed its balance"));
            }
        }
        for p in self.controls.purposes.values() {
            if self.acct(&p.issuer).is_none() {
                return Err("a purpose's issuer does not exist".into());
            }
        }
        for (k, a) in &self.controls.key_index {
            if self.exists(k) || self.controls.retired.contains_key(k) || self.acct(a).is_none() {
                return Err(format!("controlling key {k} is also an account or retired"));
            }
        }
        Ok(())
    }

    /// Whether a control-aware caller should read `AccountControls` for an
    /// account: the default when none is stored.
    pub fn account_controls(&self, id: &AccountId) -> AccountControls {
        self.controls.account(id)
    }
}
