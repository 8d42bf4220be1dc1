# Loads the Vagrantfile against a recorder instead of Vagrant and prints what it configured as
# JSON, so tests/vagrant/check.sh can assert the values that `vagrant validate` accepts but never
# shows (CPUs and memory per provider, forwarded ports, synced folders, provisioner env).
# Usage: ruby vagrantfile_config.rb path/to/Vagrantfile
require "json"

# Records every setting and call made on it; nested blocks get their own recorder.
class SettingsRecorder
  def initialize
    @settings = {}
    @calls = []
  end

  def __settings = @settings
  def __calls = @calls

  def method_missing(name, *args, **kwargs, &block)
    key = name.to_s
    if key.end_with?("=")
      @settings[key.chomp("=")] = args.first
    elsif args.empty? && kwargs.empty? && block.nil?
      @settings[key] ||= SettingsRecorder.new
    else
      @calls << { "method" => key, "args" => args, "options" => kwargs.transform_keys(&:to_s) }
    end
  end

  def respond_to_missing?(*) = true

  # Object#display would otherwise shadow a setting of that name.
  undef_method :display

  def __dump
    out = {}
    @settings.each do |k, v|
      out[k] = v.is_a?(SettingsRecorder) ? v.__dump : v
    end
    out["calls"] = @calls unless @calls.empty?
    out
  end
end

# Stands in for the `config` object: vm.provider blocks are run against a per-provider recorder.
class VmRecorder < SettingsRecorder
  def initialize
    super
    @providers = {}
  end

  def provider(name, &block)
    rec = (@providers[name.to_s] ||= SettingsRecorder.new)
    block&.call(rec)
  end

  def __dump
    super.merge("providers" => @providers.transform_values(&:__dump))
  end
end

class ConfigRecorder < SettingsRecorder
  def vm
    @vm ||= VmRecorder.new
  end

  def __dump
    super.merge("vm" => vm.__dump)
  end
end

module Vagrant
  CAPTURED = []
  def self.configure(version)
    raise "unexpected config version #{version}" unless version == "2"

    config = ConfigRecorder.new
    yield config
    CAPTURED << config
  end
end

load ARGV.fetch(0)
puts JSON.pretty_generate(Vagrant::CAPTURED.map(&:__dump))
