"""The edge's pure logic: intents, entities, redaction, replies, proposals. No I/O here."""
