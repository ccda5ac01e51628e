"""Market questions and wallet names the simulator draws from; invented, but shaped like real ones."""

from __future__ import annotations

__all__ = ["BINARY_QUESTIONS", "CATEGORICAL_QUESTIONS", "WHALE_NAMES", "binary_rules", "child_rules"]

BINARY_QUESTIONS = (
    "Will BTC close above $120k on Dec 31?",
    "Will ETH trade above $5,000 by March 31?",
    "Will the Fed cut rates at the next FOMC meeting?",
    "Will BNB reach a new all-time high this quarter?",
    "Will US CPI YoY print below 2.5% in the next release?",
    "Will Starship reach orbit this month?",
    "Will gold close above $3,500/oz this week?",
    "Will the S&P 500 close the year higher?",
    "Will a spot SOL ETF be approved by June 30?",
    "Will a new frontier AI model be released this quarter?",
    "Will the ECB hold rates at its next meeting?",
    "Will BTC dominance stay above 55% through Friday?",
)

CATEGORICAL_QUESTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("How many Fed rate cuts in 2026?", ("25 bps", "50 bps", "75 bps", "100+ bps")),
    ("What will BTC's price be on Friday?", ("<100k", "100k–110k", "110k–120k", ">120k")),
    (
        "Which company will top market cap at year end?",
        ("Nvidia", "Apple", "Microsoft", "Alphabet", "Amazon"),
    ),
    ("Who will win the Champions League final?", ("Home side", "Away side")),
    ("Highest temperature in New York on Saturday?", ("<20°C", "20–25°C", "25–30°C", ">30°C")),
    ("Which chain will lead DEX volume this month?", ("BNB Chain", "Ethereum", "Solana")),
)

WHALE_NAMES = ("Moby", "Orca", "Narwhal", "Beluga", "Humpback", "Minke", "Bowhead", "Sei", "Bryde", "Fin")


def binary_rules(question: str) -> str:
    return (
        f"This market resolves to “Yes” if the answer to “{question}” is yes by the cutoff time, "
        "and to “No” otherwise.\n\nResolution source: the official publication named in the question."
    )


def child_rules(question: str, option: str) -> str:
    return (
        f"This market resolves to “Yes” if the outcome of “{question}” is **{option}**, "
        "and to “No” otherwise.\n\nOnly one option of the parent market resolves to “Yes”."
    )
