"""The command line (click). Only this layer prints or exits."""
