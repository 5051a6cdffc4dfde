"""Model organisms: hidden behaviours fine-tuned into the subject model (LoRA, merged into plain model folders),
each with the answer an audit must find, sealed in a manifest the audit never reads (issue 44).

`suite` names the plants, `data` writes their training examples, `lora` fine-tunes and merges, `acceptance`
measures whether a plant took, and `plant` runs a whole suite, resumably.
"""
