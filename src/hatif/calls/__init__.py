"""Call control: what joins the SIP layer and the media engine (media anchoring and the first apps)."""
