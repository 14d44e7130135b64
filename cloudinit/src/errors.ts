/**
 * The error codes cloudinit throws (apply and the datasources). The report
 * lines of `validate` (E_YAML, E_INVALID_VALUE, ...) are v1.14.0's output, not
 * BasaltErrors, and are not listed here.
 */
import { CONF_FILES } from '../../common/src/contracts.js';
import { defineErrors } from '../../common/src/errors.js';

export const CLOUDINIT_ERRORS = defineErrors('cloudinit', {
  // The planner: what aborts v1.14.0's Apply.
  E_PERMISSIONS: { meaning: 'write_files permissions are not an octal number', hint: "use an octal mode such as '0644'" },
  E_CONTENT_ENCODING: { meaning: 'write_files content cannot be decoded with its encoding', hint: 'fix the encoding or the content' },
  E_UPDATE_OPTION: { meaning: 'coreos.update has an invalid value', hint: 'reboot_strategy must be etcd-lock, reboot or off' },
  E_UPDATE_CONF: { meaning: 'the target has no update.conf for coreos.update to rewrite', hint: `the target needs ${CONF_FILES.join(' or ')}` },
  E_MANAGE_ETC_HOSTS: { meaning: 'manage_etc_hosts has a value other than "localhost"', hint: 'the only supported value is "localhost"' },
  // The applier.
  E_PATH_ESCAPES_ROOT: { meaning: 'a path of the config leads outside the target root' },
  E_NOT_DIR: { meaning: 'the folder of a file to write exists and is not a directory' },
  E_OWNER: { meaning: "write_files owner names a user or group the target's passwd or group file does not have" },
  E_NO_USER: { meaning: "SSH keys are for a user the target's passwd file does not have" },
  E_UNIT_ENABLE: { meaning: 'systemctl could not enable a unit under another root', hint: 'the unit needs an [Install] section' },
  // The config drive datasource.
  E_CONFIGDRIVE_LABEL: { meaning: 'a config drive image is not labelled config-2' },
  E_CONFIGDRIVE_IMAGE: { meaning: 'a config drive image is neither vfat nor iso9660', hint: 'pass a config drive directory or an image labelled config-2' },
  // The platforms' metadata services (datasource/aws.ts, gce.ts, digitalocean.ts, azure.ts, vmware.ts).
  E_METADATA_STATUS: { meaning: 'a metadata service answered with an error status', hint: 'check that the machine runs on the platform its platform id names (basalt.oem.id=)' },
  E_METADATA_FORMAT: { meaning: 'a metadata document is not in the form the platform documents (JSON, XML, listing)', hint: 'the metadata service or a proxy in between is misbehaving' },
  E_IMDS_TOKEN: { meaning: 'the EC2 instance metadata service refused the IMDSv2 session token', hint: 'check the instance metadata options (http-tokens, http-put-response-hop-limit)' },
  E_METADATA_FLAVOR: { meaning: 'an answer from the GCE metadata server lacks the header Metadata-Flavor: Google', hint: 'something other than the GCE metadata server answered; check the network and proxies' },
  E_AZURE_READY: { meaning: "the Azure wireserver refused the goal state request or the ready report", hint: 'check that 168.63.129.16 is reachable from the machine' },
  E_GUESTINFO: { meaning: 'VMware guestinfo has a value Basalt cannot use (unknown encoding, undecodable data)', hint: 'set guestinfo.coreos.config.data.encoding to base64, gzip+base64 or leave it empty' },
  E_PLATFORM_ID: { meaning: 'the platform id on the kernel command line (basalt.oem.id=) is not one Basalt knows', hint: 'use one of qemu, metal, pxe, iso, aws, gce, azure, openstack, vmware, digitalocean' },
});
