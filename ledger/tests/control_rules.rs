//! Unit tests of the central-bank controls at the state-machine boundary,
//! for the rules the random model (`proptest_controls.rs`) leaves out:
//! wallet tiers, payee categories and time locks, a budget payer's tagged
//! payments, freeze authority, key reuse, signatory rule validation and the
//! sweep's record. Every rejection is checked to leave the state hash and
//! the control records unchanged.

mod common;

use common::*;
use ed25519_dalek::SigningKey;
use ruble_ledger::codec::{Op, SignedOp};
use ruble_ledger::reason::Reason;
use ruble_ledger::state::{Applied, Effect, State};
use ruble_ledger::types::{AccountId, AccountKind, AccountStatus, Limits, Phase, Tier};

struct T {
    w: World,
    s: State,
    /// `AppliedOp::also` of the last applied operation.
    last_also: Vec<AccountId>,
}

impl T {
    fn new() -> T {
        let w = World::new();
        let mut g = w.genesis();
        g.phase = Phase::Retail;
        let (s, _) = State::genesis(&g).unwrap();
        T {
            w,
            s,
            last_also: Vec::new(),
        }
    }

    fn run_at(&mut self, ts: u64, op: SignedOp) -> Result<Applied, Reason> {
        self.s.begin_block(ts.max(self.s.timestamp_ms()));
        let before = (self.s.state_hash(), self.s.controls().records(), self.s.totals());
        let r = self.s.apply(self.w.verified(op));
        let sealed = self.s.seal_block();
        if r.is_err() {
            assert_eq!(
                before,
                (self.s.state_hash(), self.s.controls().records(), self.s.totals()),
                "a rejection must change nothing"
            );
        } else {
            self.last_also = sealed.ops.last().map(|a| a.also.clone()).unwrap_or_default();
        }
        self.s.check_invariants().unwrap();
        r
    }
    fn signed(&mut self, k: &SigningKey, op: Op) -> Result<Applied, Reason> {
        let o = self.w.sign(k, op);
        self.run_at(T0, o)
    }
    fn cb(&mut self, op: Op) -> Result<Applied, Reason> {
        let k = self.w.cb.clone();
        self.signed(&k, op)
    }
    fn bank(&mut self, i: usize, op: Op) -> Result<Applied, Reason> {
        let k = self.w.banks[i].clone();
        self.signed(&k, op)
    }
    fn pay(&mut self, from: &SigningKey, to: AccountId, amount: u64) -> Result<Applied, Reason> {
        self.signed(
            from,
            Op::Transfer {
                payee: to,
                amount,
                purpose: String::new(),
            },
        )
    }
    fn bal(&self, a: AccountId) -> u64 {
        self.s.account(&a).unwrap().balance
    }
    fn b(&self, i: usize) -> AccountId {
        id(&self.w.banks[i])
    }
    /// Opens a wallet of `kind` at bank 0 and funds it with `amount` from the bank.
    fn wallet(&mut self, seed: u64, kind: AccountKind, amount: u64) -> SigningKey {
        let k = key(seed);
        self.bank(0, Op::OpenAccount { account: id(&k), kind }).unwrap();
        if amount > 0 {
            let bank = self.w.banks[0].clone();
            self.pay(&bank, id(&k), amount).unwrap();
        }
        k
    }
    fn funded() -> T {
        let mut t = T::new();
        let b0 = t.b(0);
        t.cb(Op::Issue {
            bank: b0,
            amount: 10_000_000,
        })
        .unwrap();
        t
    }
}

#[test]
fn tiers_have_their_own_caps_and_the_bank_moves_wallets_between_them() {
    let mut t = T::funded();
    let r = t.wallet(10, AccountKind::Retail, 0);
    let biz = t.wallet(11, AccountKind::Business, 0);
    let caps = Limits {
        balance_cap: 15_000_00,
        payment_cap: 5_000_00,
        daily_outflow_cap: u64::MAX,
    };
    assert_eq!(
        t.bank(
            0,
            Op::SetTierLimits {
                tier: Tier::Anonymous,
                limits: caps
            }
        ),
        Err(Reason::NotAuthorised)
    );
    t.cb(Op::SetTierLimits {
        tier: Tier::Anonymous,
        limits: caps,
    })
    .unwrap();
    // The full tier's limits are the retail kind's.
    assert_eq!(
        t.cb(Op::SetTierLimits {
            tier: Tier::Full,
            limits: caps
        }),
        Err(Reason::InvalidRule)
    );
    // A business wallet has no tier; another bank's client is not this bank's.
    assert_eq!(
        t.bank(
            0,
            Op::SetTier {
                account: id(&biz),
                tier: Tier::Anonymous
            }
        ),
        Err(Reason::InvalidKind)
    );
    assert_eq!(
        t.bank(
            1,
            Op::SetTier {
                account: id(&r),
                tier: Tier::Anonymous
            }
        ),
        Err(Reason::NotAuthorised)
    );
    t.bank(
        0,
        Op::SetTier {
            account: id(&r),
            tier: Tier::Anonymous,
        },
    )
    .unwrap();
    let bank = t.w.banks[0].clone();
    assert_eq!(
        t.pay(&bank, id(&r), 15_000_01).map(|_| ()),
        Err(Reason::BalanceLimitExceeded)
    );
    t.pay(&bank, id(&r), 15_000_00).unwrap();
    assert_eq!(
        t.pay(&r, id(&biz), 5_000_01).map(|_| ()),
        Err(Reason::PaymentLimitExceeded)
    );
    // Fully identified: the retail kind's (unlimited) limits apply again.
    t.bank(
        0,
        Op::SetTier {
            account: id(&r),
            tier: Tier::Full,
        },
    )
    .unwrap();
    t.pay(&r, id(&biz), 10_000_00).unwrap();
    t.pay(&bank, id(&r), 50_000_00).unwrap();
    assert_eq!(t.s.controls().account(&id(&r)).tier, Tier::Full);
}

#[test]
fn tagged_money_pays_listed_categories_after_its_time_lock_and_returns_to_a_budget_payer() {
    let mut t = T::funded();
    let budget = t.wallet(20, AccountKind::Business, 1_000_000);
    let pharmacy = t.wallet(21, AccountKind::Business, 0);
    let shop = t.wallet(22, AccountKind::Business, 0);
    let citizen = t.wallet(23, AccountKind::Retail, 0);
    t.bank(
        0,
        Op::SetCategory {
            account: id(&pharmacy),
            category: 5912,
        },
    )
    .unwrap();
    let define = |unlock, expires, categories: Vec<u16>| Op::DefinePurpose {
        purpose: 7,
        issuer: id(&budget),
        unlock_at_ms: unlock,
        expires_at_ms: expires,
        payees: vec![],
        categories,
    };
    assert_eq!(t.cb(define(0, T0 + 10_000, vec![])), Err(Reason::InvalidRule));
    assert_eq!(t.cb(define(0, T0 + 10_000, vec![0])), Err(Reason::InvalidRule));
    assert_eq!(
        t.cb(define(T0 + 20_000, T0 + 10_000, vec![5912])),
        Err(Reason::InvalidRule)
    );
    assert_eq!(t.cb(define(0, T0, vec![5912])), Err(Reason::InvalidRule));
    t.cb(define(T0 + 1_000, T0 + 10_000, vec![5912])).unwrap();
    assert_eq!(t.cb(define(0, T0 + 10_000, vec![5912])), Err(Reason::PurposeExists));
    // Only the issuer pays with its purpose; the central bank is not this one's.
    let pay_tagged = |amount| Op::PayTagged {
        payee: id(&citizen),
        amount,
        purpose: 7,
    };
    assert_eq!(t.cb(pay_tagged(100)).map(|_| ()), Err(Reason::NotAuthorised));
    assert_eq!(
        t.signed(&budget, pay_tagged(1_000_001)).map(|_| ()),
        Err(Reason::InsufficientFunds)
    );
    t.signed(&budget, pay_tagged(300_000)).unwrap();
    assert_eq!(t.s.balance_parts(&id(&citizen)), (0, 300_000, 0));
    // Time-locked until T0 + 1 s, and never to a shop outside the category.
    assert_eq!(
        t.pay(&citizen, id(&pharmacy), 10).map(|_| ()),
        Err(Reason::PurposeRestricted)
    );
    let o = t.w.sign(
        &citizen,
        Op::Transfer {
            payee: id(&pharmacy),
            amount: 100_000,
            purpose: String::new(),
        },
    );
    t.run_at(T0 + 1_000, o).unwrap();
    let o = t.w.sign(
        &citizen,
        Op::Transfer {
            payee: id(&shop),
            amount: 1,
            purpose: String::new(),
        },
    );
    assert_eq!(t.run_at(T0 + 1_000, o).map(|_| ()), Err(Reason::PurposeRestricted));
    // The pharmacy received free money; the citizen's rest is still tagged.
    assert_eq!(t.s.balance_parts(&id(&pharmacy)), (100_000, 0, 0));
    assert_eq!(t.s.balance_parts(&id(&citizen)), (0, 200_000, 0));
    // Not collectable: purpose-bound money is protected.
    assert_eq!(
        t.cb(Op::Collect {
            debtor: id(&citizen),
            claimant: id(&shop),
            amount: 1
        })
        .map(|_| ()),
        Err(Reason::NothingCollectable)
    );
    // At expiry the rest goes back to the budget payer, not out of circulation.
    let issued = t.s.totals();
    let before = t.bal(id(&budget));
    let o =
        t.w.sign_until(&t.w.cb.clone(), Op::SetReportingThreshold { amount: 0 }, T0 + 600_000);
    t.run_at(T0 + 10_000, o).unwrap();
    assert_eq!(t.bal(id(&citizen)), 0);
    assert_eq!(t.bal(id(&budget)), before + 200_000);
    assert_eq!(t.s.totals(), issued);
    assert!(t.s.controls().purpose(7).is_none());
}

#[test]
fn receive_only_freeze_keeps_the_stronger_authority() {
    let mut t = T::funded();
    let a = t.wallet(30, AccountKind::Business, 1_000);
    let other = t.wallet(31, AccountKind::Business, 0);
    t.cb(Op::FreezeReceiveOnly { account: id(&a) }).unwrap();
    assert_eq!(t.s.account(&id(&a)).unwrap().status, AccountStatus::ReceiveOnly);
    assert_eq!(t.pay(&a, id(&other), 1).map(|_| ()), Err(Reason::AccountReceiveOnly));
    t.pay(&other.clone(), id(&a), 0).unwrap_err();
    let bank = t.w.banks[0].clone();
    t.pay(&bank, id(&a), 5).unwrap();
    assert_eq!(
        t.cb(Op::FreezeReceiveOnly { account: id(&a) }),
        Err(Reason::AccountReceiveOnly)
    );
    // The bank cannot lift the central bank's receive-only freeze, nor take
    // it over by escalating it to a full freeze and lifting that.
    assert_eq!(t.bank(0, Op::Unfreeze { account: id(&a) }), Err(Reason::NotAuthorised));
    t.bank(0, Op::Freeze { account: id(&a) }).unwrap();
    assert_eq!(t.bank(0, Op::Unfreeze { account: id(&a) }), Err(Reason::NotAuthorised));
    assert_eq!(t.pay(&bank, id(&a), 5).map(|_| ()), Err(Reason::AccountFrozen));
    t.cb(Op::Unfreeze { account: id(&a) }).unwrap();
    t.pay(&a, id(&other), 1).unwrap();
    // Another bank's client is not this bank's to freeze.
    assert_eq!(
        t.bank(1, Op::FreezeReceiveOnly { account: id(&a) }),
        Err(Reason::NotAuthorised)
    );
}

#[test]
fn a_rotated_key_signs_for_the_account_and_no_key_serves_twice() {
    let mut t = T::funded();
    let a = t.wallet(40, AccountKind::Business, 1_000);
    let b = t.wallet(41, AccountKind::Business, 0);
    let new = key(42);
    assert_eq!(
        t.bank(
            0,
            Op::RotateKey {
                account: id(&a),
                new_key: id(&b)
            }
        ),
        Err(Reason::KeyInUse)
    );
    assert_eq!(
        t.bank(
            1,
            Op::RotateKey {
                account: id(&a),
                new_key: id(&new)
            }
        ),
        Err(Reason::NotAuthorised)
    );
    t.bank(
        0,
        Op::RotateKey {
            account: id(&a),
            new_key: id(&new),
        },
    )
    .unwrap();
    assert_eq!(t.pay(&a, id(&b), 1).map(|_| ()), Err(Reason::KeyRevoked));
    t.pay(&new, id(&b), 1).unwrap();
    // The account's statement lists a payment its new key signed.
    assert_eq!(t.last_also, vec![id(&a)]);
    assert_eq!(t.bal(id(&a)), 999);
    assert_eq!(t.s.controls().controller(&id(&a)), id(&new));
    // Neither the retired key nor the controlling one can name a new account.
    for k in [id(&a), id(&new)] {
        let r = t.bank(
            0,
            Op::OpenAccount {
                account: k,
                kind: AccountKind::Business,
            },
        );
        assert!(matches!(r, Err(Reason::AccountExists | Reason::KeyInUse)), "{r:?}");
    }
    assert_eq!(
        t.bank(
            0,
            Op::OpenAccount {
                account: id(&new),
                kind: AccountKind::Business
            }
        ),
        Err(Reason::KeyInUse)
    );
    // Rotating again retires the second key too; the first never comes back.
    let third = key(43);
    t.bank(
        0,
        Op::RotateKey {
            account: id(&a),
            new_key: id(&third),
        },
    )
    .unwrap();
    assert_eq!(t.pay(&new, id(&b), 1).map(|_| ()), Err(Reason::KeyRevoked));
    assert_eq!(
        t.bank(
            0,
            Op::RotateKey {
                account: id(&a),
                new_key: id(&new)
            }
        ),
        Err(Reason::KeyInUse)
    );
    t.pay(&third, id(&b), 1).unwrap();
}

#[test]
fn signatory_rules_are_validated_and_the_sweep_is_recorded_for_the_bank() {
    let mut t = T::funded();
    let biz = t.wallet(50, AccountKind::Business, 0);
    let retail = t.wallet(51, AccountKind::Retail, 0);
    let (s1, s2) = (id(&key(52)), id(&key(53)));
    let rule = |account, required, keys: Vec<AccountId>| Op::SetSignatories {
        account,
        min_amount: 1,
        required,
        keys,
    };
    assert_eq!(t.bank(0, rule(id(&retail), 1, vec![s1])), Err(Reason::InvalidKind));
    assert_eq!(t.bank(0, rule(id(&biz), 3, vec![s1, s2])), Err(Reason::InvalidRule));
    assert_eq!(t.bank(0, rule(id(&biz), 0, vec![s1])), Err(Reason::InvalidRule));
    assert_eq!(t.bank(0, rule(id(&biz), 1, vec![s1, s1])), Err(Reason::InvalidRule));
    t.bank(0, rule(id(&biz), 2, vec![s1, s2])).unwrap();
    assert!(t.s.controls().account(&id(&biz)).signatories.is_some());
    t.bank(0, rule(id(&biz), 0, vec![])).unwrap();
    assert!(t.s.controls().account(&id(&biz)).signatories.is_none());

    // The waterfall: a retail wallet capped at 1,000.00 ₽ keeps 1,000.00 and
    // its bank's settlement account gets the rest, in the same operation.
    t.cb(Op::SetLimits {
        kind: AccountKind::Retail,
        limits: Limits {
            balance_cap: 1_000_00,
            ..Limits::UNLIMITED
        },
    })
    .unwrap();
    t.bank(
        0,
        Op::SetSweep {
            account: id(&retail),
            enabled: true,
        },
    )
    .unwrap();
    let bank = t.w.banks[0].clone();
    t.pay(&bank, id(&biz), 5_000_00).unwrap();
    let before = t.bal(t.b(0));
    let r = t.pay(&biz, id(&retail), 1_500_00).unwrap();
    assert_eq!(r.effect, Effect::Swept { amount: 500_00 });
    assert_eq!(t.bal(id(&retail)), 1_000_00);
    assert_eq!(t.bal(t.b(0)), before + 500_00);
    assert_eq!(t.last_also, vec![t.b(0)]);
    // Without the waterfall the credit is refused whole.
    t.bank(
        0,
        Op::SetSweep {
            account: id(&retail),
            enabled: false,
        },
    )
    .unwrap();
    assert_eq!(
        t.pay(&biz, id(&retail), 1).map(|_| ()),
        Err(Reason::BalanceLimitExceeded)
    );
}
