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
  E_PROFILE_EXTENDS: {
    meaning: "the profile named by 'extends' cannot be read",
    hint: "give a profile name under configs/profiles/ (extends: default) or a path relative to this file (extends: ../base.yaml)",
  },
  E_PROFILE_CYCLE: {
    meaning: "profiles extend each other in a circle ('extends' leads back to a profile already in the chain)",
    hint: "remove one 'extends' so that the chain ends at a profile without one",
  },
  E_PROFILE_REMOVE_MISSING: {
    meaning: 'a remove: entry names an item the inherited list does not have (nothing is removed)',
    hint: "check the spelling against 'basalt build --print-profile' of the base profile",
  },
  E_PROFILE_PATH: {
    meaning: 'a file or directory the profile names (a key, the overlay, an apt key) does not exist or is of the wrong kind',
    hint: 'paths in a profile are relative to the profile file that names them',
  },
  E_PROFILE_DEPRECATED: {
    meaning: 'a profile key that still works but has a new place',
    hint: 'move it to the place the message names',
  },
});
