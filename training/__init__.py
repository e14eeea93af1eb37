"""Training and evaluation code for Flowmill's demo models; may import modeling/ and sampling/, never server/."""
