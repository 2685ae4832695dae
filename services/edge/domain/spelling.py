"""Messages as the rules read them: lower case, contractions spelled out, and the billing
words people mistype ("cancle", "subscripton", "refnd", "invoces") put right.

Only a word that is neither a billing word nor a common English word is corrected, and only
to a billing word at most one edit away (two for long words; a swap of two letters is one
edit). So "change" never becomes "charge", nor "cause" "pause".
"""

from __future__ import annotations

import re

from rapidfuzz import process
from rapidfuzz.distance import OSA


def word_set(text: str) -> frozenset[str]:
    """The words of a space-separated list."""
    return frozenset(text.split())


# The words the rules look for, as people spell them when they spell them right.
BILLING_WORDS = word_set(
    """
    account accounts active agent agents amount annual automatic billed billing bounced
    cancel canceled canceling cancelled cancelling cancellation cancelation charge charged
    charges charging cheaper cheapest confirm credit customer declined decline deducted delete
    details double downgrade downgrading duplicate duplicated email emailed expired failed
    failing failure freeze history human humans invoice invoices manager membership method
    monthly operator payment payments pause person please plans previous pricing prices
    receipt receipts refund refunded refunds reimburse reimbursement rejected renew renewal
    renews representative restart restore resume retry reverse revert statement statements
    status subscribe subscribed subscription subscriptions support suspend switch terminate
    transaction transfer twice unpause unsubscribe unsuccessful upcoming update upgrade
    upgrading whatsapp yearly plan tier tiers card cards bill bills paused pausing resumed
    renewed upgraded downgraded refunding retried updating emailing invoiced
    """
)

# Frequent English words near a billing word; never "corrected".
COMMON_WORDS = word_set(
    """
    parsed passed passing parsing plays stats state states detail lease killed filled mount
    retired bounded ties
    about above across actually after again against ahead also always another answer anyone
    anything around asked awesome because before behind being below better between bigger
    cause change changed changes changing charity check clause close closed coming could
    country credit current daily dear didnt different doesnt doing done dollar dollars
    during early either else email emails enough entry euros even every exactly expect
    false first found friend further great happen happy having hello hours house however
    important inside instead issue issues itself joke just known large larger later least
    leave less letter likely little local longer looking lower made maybe means message might
    minute minutes money month months morning mostly moved never night nothing notice number
    often order other others paid parse passe paste people phase phone place plane plant
    please point price prior private probably problem public pursue quite rather reason
    recent record refer region remind report repeat request reset return right rules
    saying second seems service services several shall share should since small smaller
    something sometimes soon sorry start started state statue still story strange
    subject sure system taken thanks their there these thing things think those though
    through today together tomorrow twice under until update updated using usual value
    various version want wanted weather week where which while whole within without
    wonder words world would write wrong years yesterday yours
    """
)

_CONTRACTIONS = {
    "n't": " not",
    "'m": " am",
    "'re": " are",
    "'ve": " have",
    "'ll": " will",
    "'d": " would",
}
_IRREGULAR = {"can't": "cannot", "won't": "will not", "dont": "do not", "cant": "cannot"}
_SPLIT_WORDS = {"doesnt": "does not", "didnt": "did not", "isnt": "is not", "im": "i am"}
_TOKEN = re.compile(r"[a-z0-9$€£₹¥_]+(?:[.,][0-9]+)*|'[a-z]+")


# Billing words by first letter: a typo seldom changes the first letter, and real words that
# do differ there from a billing word ("killed", "mount", "lease") must stay themselves.
_BY_INITIAL: dict[str, tuple[str, ...]] = {
    initial: tuple(w for w in sorted(BILLING_WORDS) if len(w) >= 5 and w[0] == initial)
    for initial in {word[0] for word in BILLING_WORDS}
}


def _max_edits(word: str) -> int:
    # Two edits only in long words: at eight letters "building" is two from "billing".
    return 2 if len(word) >= 10 else 1


def correct(word: str) -> str:
    """The billing word meant by ``word``, or ``word`` itself."""
    if len(word) < 4 or not word.isalpha() or word in BILLING_WORDS or word in COMMON_WORDS:
        return word
    found = process.extractOne(
        word,
        _BY_INITIAL.get(word[0], ()),
        scorer=OSA.distance,
        score_cutoff=_max_edits(word),
    )
    return word if found is None else str(found[0])


def _expand(text: str) -> str:
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    for short, full in _IRREGULAR.items():
        text = re.sub(rf"\b{re.escape(short)}\b", full, text)
    for short, full in _CONTRACTIONS.items():
        text = text.replace(short, full)
    text = re.sub(r"\b(\w+)'s\b", r"\1 is", text)
    return text


def tokens(text: str) -> list[str]:
    """The message's words, lower case, contractions spelled out, billing typos corrected.
    Ids (ch_..., in_...), amounts ("$49", "12.50") and numbers stay as written."""
    words: list[str] = []
    for raw in _TOKEN.findall(_expand(text)):
        word = raw.strip("'")
        if not word:
            continue
        for part in _SPLIT_WORDS.get(word, word).split():
            words.append(correct(part))
    return words
