/**
 * The error codes of build profiles (configs/profiles/*.yaml): the one a failed
 * load throws, and the codes of the entries of a validation report (each entry
 * names the file, line, column and key). Part of the CLI's interface: scripts
 * match them in --json output.
 */
import { defineErrors } from '../../common/src/errors.js';

export const PROFILE_ERRORS = defineErrors('configs', {
  E_PROFILE_INVALID: {
    meaning: 'the build profile has errors (every one is listed, with file, line, column and key)',
    hint: 'fix the keys above; nothing was built',
  },
  E_PROFILE_SYNTAX: {
    meaning: 'the profile is not valid YAML',
    hint: 'fix the YAML at the line and column given',
  },
  E_PROFILE_VERSION: {
    meaning: "the profile's formatVersion is newer than this Basalt reads",
    hint: 'use a newer Basalt, or write the profile in format version 1',
  },
  E_PROFILE_TYPE: {
    meaning: 'a profile key has a value of the wrong type (a list for a string, a word for a number...)',
    hint: 'see configs/profiles/default.yaml for the form of each key',
  },
  E_PROFILE_VALUE: {
    meaning: 'a profile value is out of its allowed range or form, or conflicts with another key',
    hint: 'see configs/profiles/default.yaml for the allowed values',
  },
  E_PROFILE_MISSING: {
    meaning: 'a required profile key is missing',
    hint: 'add the key (see configs/profiles/default.yaml)',
  },
  E_PROFILE_MISSING_PACKAGE: {
    meaning: "a package a bootable image needs is not in the profile's packages",
    hint: "add the package to 'packages'",
  },
  E_PROFILE_UNKNOWN_KEY: {
    meaning: 'a profile key this Basalt does not know (ignored)',
    hint: 'check the spelling; the message lists the known keys',
  },
  E_PROFILE_DUPLICATE: {
    meaning: 'a list item is listed twice (the copy is ignored)',
    hint: 'remove the second copy',
  },
});
